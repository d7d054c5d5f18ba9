//! A tiny deterministic PRNG (splitmix64): schedules are reproducible from `--seed`
//! without a dependency whose output could change between versions.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5EED_C4A0_5EED_C4A0)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Uniform duration in `[lo_ms, hi_ms]`.
    pub fn millis(&mut self, lo_ms: u64, hi_ms: u64) -> Duration {
        Duration::from_millis(lo_ms + self.below(hi_ms.saturating_sub(lo_ms) + 1))
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// `k` distinct items of `items`, in random order (all of them if `k` is larger).
    pub fn pick(&mut self, items: &[u64], k: usize) -> Vec<u64> {
        let mut pool = items.to_vec();
        let mut out = Vec::with_capacity(k);
        while out.len() < k && !pool.is_empty() {
            let len = u64::try_from(pool.len()).unwrap_or(u64::MAX);
            let i = usize::try_from(self.below(len)).unwrap_or(0);
            out.push(pool.swap_remove(i.min(pool.len() - 1)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_sequence_and_another_seed_does_not() {
        let a: Vec<u64> = (0..8).scan(Rng::new(7), |r, _| Some(r.next_u64())).collect();
        let b: Vec<u64> = (0..8).scan(Rng::new(7), |r, _| Some(r.next_u64())).collect();
        let c: Vec<u64> = (0..8).scan(Rng::new(8), |r, _| Some(r.next_u64())).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn pick_returns_distinct_members_and_millis_stays_in_range() {
        let mut r = Rng::new(1);
        for _ in 0..100 {
            let p = r.pick(&[1, 2, 3], 2);
            assert_eq!(p.len(), 2);
            assert_ne!(p.first(), p.get(1));
            assert!(p.iter().all(|x| (1..=3).contains(x)));
            let d = r.millis(1000, 4000);
            assert!(d >= Duration::from_millis(1000) && d <= Duration::from_millis(4000));
        }
        assert_eq!(r.pick(&[5], 3), vec![5]);
    }
}
