//! Bounds on internode batches: by entry count *and* by bytes.
//!
//! Hint replay and repair stream cells in batches. A batch bounded only by
//! count can exceed the internode message limit when values are large (200
//! hints of 1 MiB), and then fails the same way on every retry. Every batch
//! is therefore cut at [`MAX_BATCH_ENTRIES`] entries or [`MAX_BATCH_BYTES`]
//! bytes, whichever comes first; an entry larger than the byte bound goes
//! alone (it is at most one maximum value plus its key, which the message
//! limit always admits).

/// Most entries in one batch.
pub const MAX_BATCH_ENTRIES: usize = 500;
/// Most bytes in one batch of several entries.
pub const MAX_BATCH_BYTES: usize = 1 << 20;

/// A count-and-bytes bound that a batch fills up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimit {
    pub entries: usize,
    pub bytes: usize,
}

impl Default for BatchLimit {
    fn default() -> Self {
        Self {
            entries: MAX_BATCH_ENTRIES,
            bytes: MAX_BATCH_BYTES,
        }
    }
}

impl BatchLimit {
    /// A limit of `entries` entries and the default byte bound.
    pub fn entries(entries: usize) -> Self {
        Self {
            entries,
            ..Self::default()
        }
    }

    /// Whether a batch holding `entries` entries of `bytes` bytes may take
    /// one more of `next` bytes. An empty batch always takes one.
    pub fn admits(&self, entries: usize, bytes: usize, next: usize) -> bool {
        entries == 0 || (entries < self.entries && bytes.saturating_add(next) <= self.bytes)
    }

    /// The leading `items` that fit in one batch (the first always does);
    /// stops reading at the first that does not, or at an error.
    pub fn fill<T, E>(
        &self,
        items: impl Iterator<Item = Result<T, E>>,
        size: impl Fn(&T) -> usize,
    ) -> Result<Vec<T>, E> {
        let mut batch = Vec::new();
        let mut bytes = 0usize;
        for item in items {
            let item = item?;
            let len = size(&item);
            if !self.admits(batch.len(), bytes, len) {
                break;
            }
            bytes = bytes.saturating_add(len);
            batch.push(item);
        }
        Ok(batch)
    }

    /// Splits `items` into consecutive batches within the limit.
    pub fn split<T>(&self, items: Vec<T>, size: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
        let mut batches = Vec::new();
        let mut current: Vec<T> = Vec::new();
        let mut bytes = 0usize;
        for item in items {
            let len = size(&item);
            if !self.admits(current.len(), bytes, len) {
                batches.push(std::mem::take(&mut current));
                bytes = 0;
            }
            bytes = bytes.saturating_add(len);
            current.push(item);
        }
        if !current.is_empty() {
            batches.push(current);
        }
        batches
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_cut_by_count_and_by_bytes_and_big_items_go_alone() {
        let limit = BatchLimit {
            entries: 3,
            bytes: 10,
        };
        let sizes = |v: Vec<usize>| limit.split(v, |n| *n);
        assert_eq!(sizes(vec![1, 1, 1, 1]), vec![vec![1, 1, 1], vec![1]]);
        assert_eq!(sizes(vec![4, 4, 4]), vec![vec![4, 4], vec![4]]);
        assert_eq!(sizes(vec![2, 50, 2]), vec![vec![2], vec![50], vec![2]]);
        assert_eq!(sizes(vec![]), Vec::<Vec<usize>>::new());
        // Nothing is lost or reordered.
        let items: Vec<usize> = (0..100).map(|i| i % 13).collect();
        let flat: Vec<usize> = limit.split(items.clone(), |n| *n).concat();
        assert_eq!(flat, items);
    }

    #[test]
    fn a_hundred_one_mib_values_never_share_an_oversized_batch() {
        let limit = BatchLimit::default();
        let batches = limit.split(vec![1usize << 20; 100], |n| *n + 64);
        assert_eq!(batches.len(), 100);
        assert!(batches.iter().all(|b| b.len() == 1));
    }
}
