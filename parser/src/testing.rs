//! Test support shared by every module: a deterministic generator for the
//! "never panics on garbage input" tests.

/// A xorshift64 generator (no dependency, same sequence on every machine).
pub(crate) struct XorShift(u64);

impl XorShift {
    /// A generator from a seed (0 is replaced, as xorshift would stay 0).
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// The next pseudo-random value.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next_u64() % u64::try_from(n).unwrap()).unwrap()
    }

    /// A string of up to `max_len` characters drawn from `alphabet`.
    pub(crate) fn string(&mut self, alphabet: &[char], max_len: usize) -> String {
        let len = self.below(max_len + 1);
        (0..len)
            .map(|_| alphabet[self.below(alphabet.len())])
            .collect()
    }

    /// Up to `max_len` pieces drawn from `pieces`, concatenated.
    pub(crate) fn join(&mut self, pieces: &[&str], max_len: usize) -> String {
        let len = self.below(max_len + 1);
        (0..len).map(|_| pieces[self.below(pieces.len())]).collect()
    }
}
