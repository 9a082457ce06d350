//! TEMPORARY STUB of the scenario runtime (replaced by the real module on merge).
#![allow(dead_code, unused_variables, clippy::all)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::model::*;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RuntimeError(pub String);

pub struct Shared {
    pub file: Arc<ScenarioFile>,
}
impl Shared {
    pub fn new(file: Arc<ScenarioFile>) -> Result<Shared, RuntimeError> {
        Ok(Shared { file })
    }
}

pub struct Rng(u64);
impl Rng {
    pub fn f64(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

pub struct VuState {
    pub vu: u64,
    pub iteration: u64,
    vars: HashMap<String, String>,
    rng: Rng,
}
impl VuState {
    pub fn new(vu: u64, seed: u64, shared: &Shared) -> Result<VuState, RuntimeError> {
        Ok(VuState {
            vu,
            iteration: 0,
            vars: HashMap::new(),
            rng: Rng(seed | 1),
        })
    }
    pub fn begin_iteration(&mut self, shared: &Shared) {
        self.iteration += 1;
    }
    pub fn render(&mut self, t: &Template, shared: &Shared, out: &mut Vec<u8>) {
        for s in &t.segments {
            match s {
                Segment::Literal(l) => out.extend_from_slice(l.as_bytes()),
                Segment::Var(v) => {
                    if let Some(x) = self.vars.get(v) {
                        out.extend_from_slice(x.as_bytes())
                    }
                }
                Segment::Gen(Generator::Vu) => {
                    out.extend_from_slice(self.vu.to_string().as_bytes())
                }
                _ => out.extend_from_slice(b"x"),
            }
        }
    }
    pub fn render_string(&mut self, t: &Template, shared: &Shared) -> String {
        let mut v = Vec::new();
        self.render(t, shared, &mut v);
        String::from_utf8_lossy(&v).into_owned()
    }
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }
    pub fn set_var(&mut self, name: &str, value: &str) {
        self.vars.insert(name.into(), value.into());
    }
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }
}
pub fn think_time(t: &ThinkTime, rng: &mut Rng) -> Duration {
    match t {
        ThinkTime::Constant(d) => *d,
        ThinkTime::Uniform { min, max } => *min + (*max - *min).mul_f64(rng.f64()),
        ThinkTime::Normal { mean, .. } => *mean,
        ThinkTime::Exponential { mean } => *mean,
    }
}
pub fn chance(p: f64, rng: &mut Rng) -> bool {
    rng.f64() < p
}
pub fn pick_weighted(weights: &[f64], rng: &mut Rng) -> usize {
    let total: f64 = weights.iter().sum();
    let mut x = rng.f64() * total;
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len() - 1
}
pub struct ResponseView<'a> {
    pub status: u16,
    pub headers: Vec<(&'a str, &'a [u8])>,
    pub body: &'a [u8],
}
pub fn parse_response<'a>(
    raw: &'a [u8],
    scratch: &'a mut Vec<u8>,
) -> Result<ResponseView<'a>, RuntimeError> {
    Err(RuntimeError("stub".into()))
}
pub fn needs_response_bytes(step: &HttpStep) -> bool {
    false
}
pub fn run_check(
    c: &Check,
    status: u16,
    headers: &[(&str, &[u8])],
    body: &[u8],
    latency: Duration,
    vu: &mut VuState,
    shared: &Shared,
) -> bool {
    c.conditions.iter().all(|cond| match cond {
        CheckCondition::StatusIn(s) => s.contains(&status),
        CheckCondition::LatencyBelow(d) => latency < *d,
        _ => false,
    })
}
pub fn capture(
    c: &Capture,
    headers: &[(&str, &[u8])],
    body: &[u8],
    vu: &mut VuState,
    shared: &Shared,
) -> bool {
    false
}
pub fn message_matches(
    contains: Option<&Template>,
    msg: &[u8],
    vu: &mut VuState,
    shared: &Shared,
    scratch: &mut Vec<u8>,
) -> bool {
    contains.is_none()
}
