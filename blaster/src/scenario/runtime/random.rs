//! The random choices of a flow: think times (`sleep`), per-step probability and the
//! weighted choice of a flow. All take the VU's PRNG, so a seed replays a run's choices.

use std::time::Duration;

use rand::{Rng, RngExt};
use rand_distr::{Distribution, Exp1, StandardNormal};

use crate::scenario::model::ThinkTime;

/// A think time drawn from `t`: constant, uniform in [min, max], normal (clamped at zero)
/// or exponential with the given mean.
pub fn think_time<R: Rng + ?Sized>(t: &ThinkTime, rng: &mut R) -> Duration {
    match *t {
        ThinkTime::Constant(d) => d,
        ThinkTime::Uniform { min, max } if min >= max => min,
        ThinkTime::Uniform { min, max } => {
            let nanos = rng.random_range(min.as_nanos()..=max.as_nanos());
            Duration::from_nanos(nanos.try_into().unwrap_or(u64::MAX))
        }
        ThinkTime::Normal { mean, stddev } => {
            let z: f64 = StandardNormal.sample(rng);
            secs(mean.as_secs_f64() + z * stddev.as_secs_f64())
        }
        ThinkTime::Exponential { mean } => {
            let e: f64 = Exp1.sample(rng);
            secs(mean.as_secs_f64() * e)
        }
    }
}

/// The duration of a sleep rendered per VU (`sleep = "${vars.retry_after}s"`): a duration
/// (`"30s"`, `"1.5s"`) or a bare number of seconds (`"30"`, as a captured Retry-After is).
/// `None` when it is neither (the VU does not sleep).
pub fn rendered_sleep(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e9)));
    }
    crate::cli::units::parse_duration(text).ok()
}

/// Seconds to a duration, negative values (the normal's left tail) clamped to zero.
fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX)
}

/// Whether a step with probability `p` runs: always for `p >= 1` (without drawing), never
/// for `p <= 0`.
pub fn chance<R: Rng + ?Sized>(p: f64, rng: &mut R) -> bool {
    if p >= 1.0 {
        true
    } else if p > 0.0 {
        rng.random_bool(p)
    } else {
        false
    }
}

/// The index of a weight chosen with probability `weight / total` (flows by weight). A
/// single weight is chosen without drawing. Weights are positive (the parser checks);
/// non-positive ones are never chosen unless all are, then the first is.
///
/// A linear scan by hand: flows are few, and `rand`'s `WeightedIndex` would have to be built
/// (allocated) per scenario and kept beside the model.
pub fn pick_weighted<R: Rng + ?Sized>(weights: &[f64], rng: &mut R) -> usize {
    if weights.len() <= 1 {
        return 0;
    }
    let positive = |w: f64| if w > 0.0 { w } else { 0.0 };
    let total: f64 = weights.iter().copied().map(positive).sum();
    if total <= 0.0 {
        return 0;
    }
    let mut x = rng.random::<f64>() * total;
    let mut last = 0;
    for (i, &w) in weights.iter().enumerate() {
        let w = positive(w);
        if w > 0.0 {
            if x < w {
                return i;
            }
            x -= w;
            last = i;
        }
    }
    // Rounding left x at or just above the last weight.
    last
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::runtime::VuRng;
    use rand::SeedableRng;

    fn samples(t: ThinkTime, seed: u64, n: usize) -> Vec<f64> {
        let mut rng = VuRng::seed_from_u64(seed);
        (0..n)
            .map(|_| think_time(&t, &mut rng).as_secs_f64())
            .collect()
    }

    fn mean(v: &[f64]) -> f64 {
        v.iter().sum::<f64>() / v.len() as f64
    }

    fn stddev(v: &[f64]) -> f64 {
        let m = mean(v);
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
    }

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn constant() {
        assert_eq!(samples(ThinkTime::Constant(MS(250)), 1, 3), [0.25; 3]);
    }

    #[test]
    fn uniform_mean_and_bounds() {
        let t = ThinkTime::Uniform {
            min: MS(1000),
            max: MS(5000),
        };
        let v = samples(t, 1, 50_000);
        assert!(v.iter().all(|s| (1.0..=5.0).contains(s)));
        assert!((mean(&v) - 3.0).abs() < 0.03, "mean {}", mean(&v));
        // Uniform on [1, 5]: stddev 4 / sqrt(12).
        assert!((stddev(&v) - 4.0 / 12f64.sqrt()).abs() < 0.03);
        let same = ThinkTime::Uniform {
            min: MS(7),
            max: MS(7),
        };
        assert_eq!(samples(same, 1, 2), [0.007; 2]);
    }

    #[test]
    fn normal_mean_stddev_and_clamp() {
        let t = ThinkTime::Normal {
            mean: MS(1000),
            stddev: MS(200),
        };
        let v = samples(t, 2, 50_000);
        assert!((mean(&v) - 1.0).abs() < 0.01, "mean {}", mean(&v));
        assert!((stddev(&v) - 0.2).abs() < 0.01, "stddev {}", stddev(&v));
        // Mean 100ms, stddev 1s: about 46% of draws are negative, all become zero.
        let wide = samples(
            ThinkTime::Normal {
                mean: MS(100),
                stddev: MS(1000),
            },
            3,
            20_000,
        );
        assert!(wide.iter().all(|s| *s >= 0.0));
        let zeros = wide.iter().filter(|s| **s == 0.0).count() as f64 / 20_000.0;
        assert!((zeros - 0.46).abs() < 0.02, "{zeros} of draws clamped");
    }

    #[test]
    fn exponential_mean() {
        let t = ThinkTime::Exponential { mean: MS(500) };
        let v = samples(t, 4, 50_000);
        assert!(v.iter().all(|s| *s >= 0.0));
        assert!((mean(&v) - 0.5).abs() < 0.015, "mean {}", mean(&v));
        // Exponential: stddev equals the mean; the median is mean * ln 2.
        assert!((stddev(&v) - 0.5).abs() < 0.02);
        let below = v.iter().filter(|s| **s < 0.5 * 2f64.ln()).count() as f64 / v.len() as f64;
        assert!((below - 0.5).abs() < 0.01, "{below}");
        assert_eq!(
            samples(ThinkTime::Exponential { mean: MS(0) }, 4, 2),
            [0.0; 2]
        );
    }

    #[test]
    fn think_times_are_deterministic_per_seed() {
        let t = ThinkTime::Normal {
            mean: MS(1000),
            stddev: MS(200),
        };
        assert_eq!(samples(t, 9, 100), samples(t, 9, 100));
        assert_ne!(samples(t, 9, 100), samples(t, 10, 100));
    }

    #[test]
    fn chance_frequency_and_edges() {
        let mut rng = VuRng::seed_from_u64(5);
        let hits = (0..100_000).filter(|_| chance(0.3, &mut rng)).count();
        assert!((29_000..31_000).contains(&hits), "{hits}");
        assert!((0..1000).all(|_| chance(1.0, &mut rng)));
        assert!((0..1000).all(|_| !chance(0.0, &mut rng)));
        // p = 1 draws nothing: the stream is the same as without the call.
        let mut a = VuRng::seed_from_u64(6);
        let mut b = VuRng::seed_from_u64(6);
        chance(1.0, &mut a);
        assert_eq!(a.random::<u64>(), b.random::<u64>());
    }

    #[test]
    fn weighted_pick_follows_the_weights() {
        let mut rng = VuRng::seed_from_u64(7);
        let weights = [60.0, 30.0, 10.0];
        let mut counts = [0usize; 3];
        for _ in 0..100_000 {
            counts[pick_weighted(&weights, &mut rng)] += 1;
        }
        for (c, expect) in counts.iter().zip([60_000, 30_000, 10_000]) {
            assert!(c.abs_diff(expect) < 1_000, "{counts:?}");
        }
        assert_eq!(pick_weighted(&[5.0], &mut rng), 0);
        assert_eq!(pick_weighted(&[], &mut rng), 0);
        // Zero weights are never picked.
        assert!((0..1000).all(|_| pick_weighted(&[0.0, 1.0, 0.0], &mut rng) == 1));
        assert_eq!(pick_weighted(&[0.0, 0.0], &mut rng), 0);
    }
}
