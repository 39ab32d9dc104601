//! A few emptied values kept per thread for the next request, for what the
//! request path would otherwise allocate anew every time (header maps, the
//! hit lists of rule-set searches).

use std::cell::RefCell;
use std::thread::LocalKey;

/// One thread's spares of one kind.
pub(crate) type Spares<T> = LocalKey<RefCell<Vec<T>>>;

/// The spare kept last that `fits`, if there is one.
pub(crate) fn take<T>(spares: &'static Spares<T>, fits: impl Fn(&T) -> bool) -> Option<T> {
    spares.with(|spares| {
        let mut spares = spares.borrow_mut();
        let fitting = spares.iter().rposition(fits)?;
        Some(spares.swap_remove(fitting))
    })
}

/// Keeps `spare`, emptied already, unless `most` are kept.
pub(crate) fn keep<T>(spares: &'static Spares<T>, spare: T, most: usize) {
    spares.with(|spares| {
        let mut spares = spares.borrow_mut();
        if spares.len() < most {
            spares.push(spare);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static NUMBERS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    }

    #[test]
    fn spares_are_taken_last_kept_first_among_those_that_fit_and_kept_up_to_a_bound() {
        for number in [1, 5, 2, 9] {
            keep(&NUMBERS, number, 3);
        }
        assert_eq!(take(&NUMBERS, |n| *n >= 2), Some(2));
        assert_eq!(take(&NUMBERS, |n| *n >= 2), Some(5));
        assert_eq!(take(&NUMBERS, |n| *n >= 2), None, "9 was over the bound");
        assert_eq!(take(&NUMBERS, |_| true), Some(1));
    }
}
