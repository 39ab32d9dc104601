//! Sets of bytes as tables built at compile time, for the checks every byte
//! of every request goes through: asking one is a single lookup.

/// A table that says yes for exactly the bytes in `members`.
pub(crate) const fn byte_set(members: &[u8]) -> [bool; 256] {
    let mut table = [false; 256];
    let mut at = 0;
    while at < members.len() {
        table[members[at] as usize] = true;
        at += 1;
    }
    table
}
