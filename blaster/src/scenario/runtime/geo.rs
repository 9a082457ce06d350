//! The random walk behind a `kind = "geo-walk"` data source: each VU starts at a uniformly
//! random point within `radius_m` of the centre and, once per render call that reads the
//! source, moves between half and all of `step_m` metres in a heading that turns by at most
//! 30 degrees per step. A step that would leave the circle turns back towards the centre.
//!
//! Positions are kept in metres east and north of the centre and projected onto the globe
//! equirectangularly (exact enough within the tens of kilometres a walk covers). Written by
//! hand: the walk is a few lines of trigonometry, and geo crates bring far more than that.

use std::f64::consts::{FRAC_PI_4, PI, TAU};

use rand::RngExt;

use super::vu::VuRng;
use crate::scenario::model::GeoWalk;

/// Mean Earth radius (IUGG), metres.
pub(super) const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Largest change of heading per step, radians (30 degrees).
const MAX_TURN: f64 = PI / 6.0;

/// One VU's position on one walk.
#[derive(Debug, Clone)]
pub(crate) struct GeoWalker {
    /// Metres east of the centre.
    x: f64,
    /// Metres north of the centre.
    y: f64,
    /// Radians clockwise from north.
    heading: f64,
    /// The render call ([`super::VuState`]'s count) that last moved the walker.
    pub(super) last_render: u64,
}

impl GeoWalker {
    /// A walker at a uniformly random point of the circle, heading anywhere.
    pub(super) fn new(g: &GeoWalk, rng: &mut VuRng) -> GeoWalker {
        let radius = g.radius_m.max(0.0);
        // sqrt: uniform over the disc's area, not crowded at the centre.
        let r = radius * rng.random::<f64>().sqrt();
        let a = rng.random::<f64>() * TAU;
        GeoWalker {
            x: r * a.sin(),
            y: r * a.cos(),
            heading: rng.random::<f64>() * TAU,
            last_render: u64::MAX,
        }
    }

    /// Moves up to `step_m`, staying within `radius_m` of the centre.
    pub(super) fn step(&mut self, g: &GeoWalk, rng: &mut VuRng) {
        let radius = g.radius_m.max(0.0);
        let d = g.step_m.max(0.0) * rng.random_range(0.5..=1.0);
        self.heading = (self.heading + rng.random_range(-MAX_TURN..=MAX_TURN)).rem_euclid(TAU);
        let (mut nx, mut ny) = self.ahead(self.heading, d);
        if nx.hypot(ny) > radius {
            // Turn back: roughly towards the centre.
            let to_centre = (-self.x).atan2(-self.y);
            self.heading = (to_centre + rng.random_range(-FRAC_PI_4..=FRAC_PI_4)).rem_euclid(TAU);
            (nx, ny) = self.ahead(self.heading, d);
            if nx.hypot(ny) > radius {
                // Still out (a step long for the circle): straight at the centre, through it
                // at most as far as the rim, so the distance from it is |r - d| <= radius.
                let r = self.x.hypot(self.y);
                self.heading = to_centre.rem_euclid(TAU);
                (nx, ny) = self.ahead(self.heading, d.min(r + radius));
            }
        }
        self.x = nx;
        self.y = ny;
    }

    fn ahead(&self, heading: f64, d: f64) -> (f64, f64) {
        (self.x + d * heading.sin(), self.y + d * heading.cos())
    }

    /// (latitude, longitude) in degrees.
    pub(super) fn position(&self, g: &GeoWalk) -> (f64, f64) {
        let lat = g.lat + (self.y / EARTH_RADIUS_M).to_degrees();
        // Near a pole a metre east is many degrees; keep the projection finite.
        let cos_lat = g.lat.to_radians().cos().max(1e-9);
        let lon = g.lon + (self.x / (EARTH_RADIUS_M * cos_lat)).to_degrees();
        let lon = (lon + 180.0).rem_euclid(360.0) - 180.0;
        (lat.clamp(-90.0, 90.0), lon)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Great-circle distance in metres (haversine): an independent measure of the walk.
    pub(in crate::scenario::runtime) fn haversine(a: (f64, f64), b: (f64, f64)) -> f64 {
        let (la1, lo1, la2, lo2) = (
            a.0.to_radians(),
            a.1.to_radians(),
            b.0.to_radians(),
            b.1.to_radians(),
        );
        let h = ((la2 - la1) / 2.0).sin().powi(2)
            + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_M * h.sqrt().asin()
    }

    fn walk(g: GeoWalk, seed: u64, steps: usize) -> Vec<(f64, f64)> {
        let mut rng = VuRng::seed_from_u64(seed);
        let mut w = GeoWalker::new(&g, &mut rng);
        let mut out = vec![w.position(&g)];
        for _ in 0..steps {
            w.step(&g, &mut rng);
            out.push(w.position(&g));
        }
        out
    }

    const SF: GeoWalk = GeoWalk {
        lat: 37.7749,
        lon: -122.4194,
        radius_m: 500.0,
        step_m: 25.0,
    };

    #[test]
    fn stays_within_the_radius_and_moves_at_most_a_step() {
        for seed in 0..5 {
            let path = walk(SF, seed, 10_000);
            let centre = (SF.lat, SF.lon);
            let mut far = 0.0f64;
            for pair in path.windows(2) {
                let moved = haversine(pair[0], pair[1]);
                assert!(moved <= SF.step_m * 1.001, "moved {moved} m");
                far = far.max(haversine(centre, pair[1]));
            }
            assert!(
                far <= SF.radius_m * 1.001,
                "reached {far} m from the centre"
            );
            // It does wander: a walk that never left the middle would pass the bound too.
            assert!(far > SF.radius_m * 0.9, "only reached {far} m");
        }
    }

    #[test]
    fn heading_changes_gradually() {
        // Far from the rim, consecutive moves turn by at most MAX_TURN.
        let g = GeoWalk {
            radius_m: 1e6,
            ..SF
        };
        let mut rng = VuRng::seed_from_u64(3);
        let mut w = GeoWalker::new(&g, &mut rng);
        (w.x, w.y) = (0.0, 0.0);
        let mut points = vec![(w.x, w.y)];
        for _ in 0..500 {
            w.step(&g, &mut rng);
            points.push((w.x, w.y));
        }
        let bearing = |a: (f64, f64), b: (f64, f64)| (b.0 - a.0).atan2(b.1 - a.1);
        let mut max_turn = 0.0f64;
        for p in points.windows(3) {
            let turn = (bearing(p[1], p[2]) - bearing(p[0], p[1]) + PI).rem_euclid(TAU) - PI;
            max_turn = max_turn.max(turn.abs());
        }
        assert!(max_turn <= MAX_TURN + 1e-9, "turned {max_turn} rad");
        assert!(
            max_turn > MAX_TURN * 0.8,
            "never turned much: {max_turn} rad"
        );
    }

    #[test]
    fn a_step_longer_than_the_circle_still_stays_inside() {
        let g = GeoWalk {
            radius_m: 10.0,
            step_m: 50.0,
            ..SF
        };
        for p in walk(g, 9, 2000) {
            assert!(haversine((g.lat, g.lon), p) <= 10.01);
        }
        let point = GeoWalk {
            radius_m: 0.0,
            ..SF
        };
        assert!(walk(point, 1, 10).iter().all(|p| *p == (SF.lat, SF.lon)));
    }

    #[test]
    fn longitude_wraps_at_the_antimeridian() {
        let g = GeoWalk {
            lat: 0.0,
            lon: 179.9999,
            radius_m: 1000.0,
            step_m: 100.0,
        };
        let path = walk(g, 5, 1000);
        assert!(path.iter().all(|p| (-180.0..=180.0).contains(&p.1)));
        assert!(path.iter().any(|p| p.1 < 0.0), "crossed the antimeridian");
        for p in &path {
            assert!(haversine((g.lat, g.lon), *p) <= 1000.0 * 1.001);
        }
    }
}
