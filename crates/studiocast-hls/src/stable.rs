//! The stable lines of a long live playlist, rendered once.
//!
//! With a two-hour window a playlist lists thousands of segments and is
//! republished at every part (several times a second). The lines of a
//! segment that has left memory no longer change (it has no parts, its
//! `EXT-X-GAP` is decided, its tags depend only on the segment before), so
//! they are appended here once and copied as one block at each publish;
//! only the recent tail is formatted again.

/// Lines of consecutive segments `first..end()`, appended in order.
#[derive(Debug, Default)]
pub(crate) struct Stable {
    text: String,
    /// Byte offset of each segment's lines in `text`.
    offsets: Vec<usize>,
    /// Index of the segment at `offsets[0]`.
    first: usize,
}

impl Stable {
    /// One past the last segment held.
    pub(crate) fn end(&self) -> usize {
        self.first + self.offsets.len()
    }

    /// Holds the lines of segment `i`.
    pub(crate) fn covers(&self, i: usize) -> bool {
        i >= self.first && i < self.end()
    }

    /// Bytes held (a capacity hint for the playlist).
    pub(crate) fn len(&self) -> usize {
        self.text.len()
    }

    /// Append the lines of segment `end()`.
    pub(crate) fn push(&mut self, lines: &str) {
        self.offsets.push(self.text.len());
        self.text.push_str(lines);
    }

    /// Start over empty at segment `i` (segments before it are not needed).
    pub(crate) fn restart_at(&mut self, i: usize) {
        self.text.clear();
        self.offsets.clear();
        self.first = i;
    }

    /// The lines of segments `i..end()`.
    pub(crate) fn from(&self, i: usize) -> &str {
        match i.checked_sub(self.first).and_then(|k| self.offsets.get(k)) {
            Some(at) => &self.text[*at..],
            None => "",
        }
    }

    /// Forget segments before `i` (they left the window), once they are
    /// most of the text: the copy is then paid for by what it frees.
    pub(crate) fn forget_before(&mut self, i: usize) {
        if i >= self.end() {
            self.restart_at(i);
            return;
        }
        let Some(k) = i.checked_sub(self.first).filter(|k| *k > 0) else {
            return;
        };
        let dead = self.offsets[k];
        if dead * 2 < self.text.len() {
            return;
        }
        self.text.drain(..dead);
        self.offsets.drain(..k);
        for o in &mut self.offsets {
            *o -= dead;
        }
        self.first = i;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_slices_and_forgets_in_order() {
        let mut s = Stable::default();
        s.restart_at(3);
        for i in 3..10 {
            s.push(&format!("s{i}\n"));
        }
        assert_eq!(s.end(), 10);
        assert_eq!(s.from(8), "s8\ns9\n");
        assert_eq!(s.from(2), "");
        s.forget_before(4); // little to free: kept
        assert_eq!(s.from(3), "s3\ns4\ns5\ns6\ns7\ns8\ns9\n");
        s.forget_before(8);
        assert!(!s.covers(7) && s.covers(8));
        assert_eq!(s.from(8), "s8\ns9\n");
        s.push("s10\n");
        assert_eq!(s.from(9), "s9\ns10\n");
        s.forget_before(20);
        assert_eq!((s.end(), s.len()), (20, 0));
    }
}
