//! How many long-lived exchanges (WebSockets, event streams) each add-on
//! holds open, for the `limits.max_*_per_addon` caps. One counter per kind,
//! shared by every worker; a place is taken before the exchange goes on
//! and given back when what holds it is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// The places each add-on holds, by slug (an add-on holding none has no
/// entry).
#[derive(Clone, Default)]
pub struct Places(Arc<Mutex<HashMap<String, usize>>>);

impl Places {
    /// A place for one more of `slug`'s exchanges, if it holds fewer than
    /// `most` (zero: no cap).
    pub fn take(&self, slug: &str, most: usize) -> Option<Place> {
        let mut held = self.held_by_slug();
        let count = held.entry(slug.to_owned()).or_insert(0);
        if most != 0 && *count >= most {
            return None;
        }
        *count += 1;
        Some(Place {
            places: self.clone(),
            slug: slug.to_owned(),
        })
    }

    /// How many places `slug` holds.
    #[cfg(test)]
    fn held(&self, slug: &str) -> usize {
        self.held_by_slug().get(slug).copied().unwrap_or(0)
    }

    // A poisoned lock means only that a holder panicked; the counts are
    // whole, so they are used as they are.
    fn held_by_slug(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One add-on's place for one exchange; given back when dropped.
pub struct Place {
    places: Places,
    slug: String,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut held = self.places.held_by_slug();
        if let Some(count) = held.get_mut(&self.slug) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.slug);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Places;

    #[test]
    fn an_add_on_holds_at_most_its_cap_and_a_dropped_place_is_given_back() {
        let places = Places::default();
        let first = places.take("a", 2).expect("first");
        let second = places.take("a", 2).expect("second");
        assert!(places.take("a", 2).is_none(), "a third over a cap of two");
        // Another add-on's places are counted apart.
        let other = places.take("b", 2).expect("another add-on's");
        assert_eq!((places.held("a"), places.held("b")), (2, 1));
        drop(first);
        assert_eq!(places.held("a"), 1);
        let third = places.take("a", 2).expect("a place freed");
        drop((second, third, other));
        assert_eq!((places.held("a"), places.held("b")), (0, 0));
        assert!(places.held_by_slug().is_empty(), "no entry left behind");
    }

    #[test]
    fn a_cap_of_zero_is_no_cap() {
        let places = Places::default();
        let held: Vec<_> = (0..100)
            .map(|_| places.take("a", 0).expect("a place"))
            .collect();
        assert_eq!(places.held("a"), 100);
        drop(held);
        assert_eq!(places.held("a"), 0);
    }
}
