//! Latency distributions of mock routes: how long a response waits before it is sent.
//!
//! Written as `"20ms"`, `"uniform(10ms, 30ms)"`, `"normal(50ms, 10ms)"`,
//! `"exponential(30ms)"`, or a table of percentiles `{ p50 = "20ms", p90 = "60ms", p99 =
//! "200ms" }`. Sampling is a few float operations on the worker's own generator; the worker
//! waits with an io_uring timeout, never by sleeping the thread.

use std::time::Duration;

use rand::{Rng, RngExt as _};
use rand_distr::{Exp1, StandardNormal};

use crate::cli::units::parse_duration;
use crate::scenario::parse::did_you_mean;

/// The longest latency a sample may reach (also the cap of the tails of normal and
/// exponential distributions).
pub const MAX_LATENCY: Duration = Duration::from_secs(3600);

const FORM: &str = "expected a duration (\"20ms\"), uniform(MIN, MAX), normal(MEAN, STDDEV), exponential(MEAN), or a table of percentiles like { p50 = \"20ms\", p99 = \"200ms\" }";

/// A latency distribution.
#[derive(Debug, Clone, PartialEq)]
pub enum Latency {
    Constant(Duration),
    Uniform {
        min: Duration,
        max: Duration,
    },
    Normal {
        mean: Duration,
        stddev: Duration,
    },
    Exponential {
        mean: Duration,
    },
    /// Points `(quantile in 0..=1, microseconds)`, sorted, the first at quantile 0. Between
    /// two points the latency is interpolated linearly; above the last one it is the last
    /// value.
    Percentiles(Vec<(f64, f64)>),
}

impl Latency {
    /// Parses the text form (everything but the percentile table).
    pub fn parse(text: &str) -> Result<Latency, String> {
        let text = text.trim();
        let Some((f, args)) = text.split_once('(') else {
            return parse_duration(text)
                .map(Latency::Constant)
                .map_err(|e| format!("{e}; latency: {FORM}"));
        };
        let Some(args) = args.trim_end().strip_suffix(')') else {
            return Err(format!("latency {text:?}: missing \")\"; {FORM}"));
        };
        let args: Vec<Duration> = args
            .split(',')
            .map(|a| parse_duration(a.trim()))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{e}; latency: {FORM}"))?;
        let f = f.trim();
        match (f, args.as_slice()) {
            ("uniform", [min, max]) if min <= max => Ok(Latency::Uniform {
                min: *min,
                max: *max,
            }),
            ("uniform", [_, _]) => Err("uniform(MIN, MAX): MIN is greater than MAX".into()),
            ("normal", [mean, stddev]) => Ok(Latency::Normal {
                mean: *mean,
                stddev: *stddev,
            }),
            ("exponential", [mean]) => Ok(Latency::Exponential { mean: *mean }),
            ("uniform" | "normal" | "exponential", _) => Err(format!(
                "latency {text:?}: wrong number of arguments; {FORM}"
            )),
            _ => Err(format!(
                "unknown distribution \"{f}\"{} ({FORM})",
                did_you_mean(f, &["uniform", "normal", "exponential"])
            )),
        }
    }

    /// Builds a percentile distribution from `("p50", "20ms")` pairs.
    pub fn percentiles<'a>(
        points: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Latency, String> {
        let mut parsed = Vec::new();
        for (key, value) in points {
            let q = key
                .strip_prefix('p')
                .and_then(|n| n.parse::<f64>().ok())
                .filter(|q| (0.0..=100.0).contains(q))
                .ok_or_else(|| {
                    format!("percentile key \"{key}\": expected p0 to p100, like p50 or p99.9")
                })?;
            let d = parse_duration(value).map_err(|e| format!("{key}: {e}"))?;
            parsed.push((q / 100.0, d.as_secs_f64() * 1e6));
        }
        if parsed.is_empty() {
            return Err(format!("an empty table of percentiles; {FORM}"));
        }
        parsed.sort_by(|a, b| a.0.total_cmp(&b.0));
        for pair in parsed.windows(2) {
            if pair[0].0 == pair[1].0 {
                return Err(format!("percentile p{} is given twice", pair[0].0 * 100.0));
            }
            if pair[1].1 < pair[0].1 {
                return Err(format!(
                    "p{} is below p{}: latency percentiles must not decrease",
                    pair[1].0 * 100.0,
                    pair[0].0 * 100.0
                ));
            }
        }
        if parsed[0].0 > 0.0 {
            parsed.insert(0, (0.0, 0.0));
        }
        Ok(Latency::Percentiles(parsed))
    }

    /// Draws one latency.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Duration {
        let us = match self {
            Latency::Constant(d) => return *d,
            Latency::Uniform { min, max } => {
                if min == max {
                    return *min;
                }
                return rng.random_range(*min..=*max);
            }
            Latency::Normal { mean, stddev } => {
                let z: f64 = rng.sample(StandardNormal);
                mean.as_secs_f64() * 1e6 + z * stddev.as_secs_f64() * 1e6
            }
            Latency::Exponential { mean } => {
                let e: f64 = rng.sample(Exp1);
                e * mean.as_secs_f64() * 1e6
            }
            Latency::Percentiles(points) => {
                let u: f64 = rng.random();
                interpolate(points, u)
            }
        };
        Duration::from_micros(us.clamp(0.0, MAX_LATENCY.as_micros() as f64) as u64)
    }
}

/// The latency at quantile `u` of piecewise-linear percentile points.
fn interpolate(points: &[(f64, f64)], u: f64) -> f64 {
    let i = points.partition_point(|&(q, _)| q <= u);
    match (points.get(i.wrapping_sub(1)), points.get(i)) {
        (Some(&(q0, v0)), Some(&(q1, v1))) => v0 + (v1 - v0) * (u - q0) / (q1 - q0),
        (Some(&(_, v)), None) | (None, Some(&(_, v))) => v,
        (None, None) => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn median(l: &Latency) -> f64 {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut v: Vec<f64> = (0..20_001)
            .map(|_| l.sample(&mut rng).as_secs_f64() * 1e3)
            .collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }

    #[test]
    fn parses_every_form() {
        assert_eq!(Latency::parse("20ms"), Ok(Latency::Constant(ms(20))));
        assert_eq!(
            Latency::parse("uniform(10ms, 30ms)"),
            Ok(Latency::Uniform {
                min: ms(10),
                max: ms(30)
            })
        );
        assert_eq!(
            Latency::parse(" normal(50ms,10ms) "),
            Ok(Latency::Normal {
                mean: ms(50),
                stddev: ms(10)
            })
        );
        assert_eq!(
            Latency::parse("exponential(30ms)"),
            Ok(Latency::Exponential { mean: ms(30) })
        );
    }

    #[test]
    fn bad_forms_say_what_is_expected() {
        let e = Latency::parse("normel(1ms, 2ms)").unwrap_err();
        assert!(e.contains("did you mean \"normal\""), "{e}");
        let e = Latency::parse("uniform(3ms, 1ms)").unwrap_err();
        assert!(e.contains("MIN is greater"), "{e}");
        let e = Latency::parse("exponential(1ms, 2ms)").unwrap_err();
        assert!(e.contains("wrong number"), "{e}");
        let e = Latency::parse("fast").unwrap_err();
        assert!(e.contains("uniform(MIN, MAX)"), "{e}");
        let e = Latency::percentiles([("p50", "20ms"), ("p90", "10ms")]).unwrap_err();
        assert!(e.contains("must not decrease"), "{e}");
        let e = Latency::percentiles([("median", "20ms")]).unwrap_err();
        assert!(e.contains("p0 to p100"), "{e}");
    }

    #[test]
    fn medians_match_the_distribution() {
        assert_eq!(median(&Latency::Constant(ms(20))), 20.0);
        let m = median(&Latency::Uniform {
            min: ms(10),
            max: ms(30),
        });
        assert!((m - 20.0).abs() < 0.5, "{m}");
        let m = median(&Latency::Normal {
            mean: ms(50),
            stddev: ms(10),
        });
        assert!((m - 50.0).abs() < 0.5, "{m}");
        // The median of an exponential distribution is mean * ln 2.
        let m = median(&Latency::Exponential { mean: ms(30) });
        assert!((m - 30.0 * 2f64.ln()).abs() < 1.0, "{m}");
        let p = Latency::percentiles([("p50", "20ms"), ("p90", "60ms"), ("p99", "200ms")]).unwrap();
        let m = median(&p);
        assert!((m - 20.0).abs() < 0.5, "{m}");
    }

    #[test]
    fn percentiles_interpolate_and_clamp() {
        let Latency::Percentiles(points) =
            Latency::percentiles([("p50", "20ms"), ("p90", "60ms")]).unwrap()
        else {
            unreachable!()
        };
        for (u, want) in [
            (0.0, 0.0),
            (0.25, 10_000.0),
            (0.5, 20_000.0),
            (0.7, 40_000.0),
            (0.99, 60_000.0),
        ] {
            let got = interpolate(&points, u);
            assert!((got - want).abs() < 1e-6, "at {u}: {got}, want {want}");
        }
    }

    #[test]
    fn samples_never_go_negative() {
        let l = Latency::Normal {
            mean: ms(1),
            stddev: ms(100),
        };
        let mut rng = SmallRng::seed_from_u64(1);
        for _ in 0..1000 {
            assert!(l.sample(&mut rng) <= MAX_LATENCY);
        }
    }
}
