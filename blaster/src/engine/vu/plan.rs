//! The compiled plan of a virtual-user run: every scenario's executor and its flows turned
//! into flat op lists, and every step that produces samples listed once with its tags.
//!
//! Boundary: pure data built before the run (from a scenario file or from the `ws://` quick
//! CLI); the workers only read it. A flow's steps become [`Op`]s with jumps (loops, per-step
//! probability), so a VU is a program counter into a slice, not a tree walk.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::proto::ws::WsLimits;
pub use crate::scenario::model::Backoff;
use crate::scenario::model::{
    Executor, HttpStep, Repeat, ScenarioFile, Step, StepKind, Template, ThinkTime,
};

/// Loops may nest this deep.
pub const MAX_LOOP_DEPTH: usize = 8;

/// One instruction of a flow.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// An HTTP request: step id.
    Http(u32),
    WsConnect(u32),
    WsSend(u32),
    WsExpect(u32),
    WsSubscribe(u32),
    WsClose(u32),
    Sleep(ThinkTime),
    /// A sleep rendered per VU (`sleep = "${vars.retry_after}s"`).
    SleepFor(Template),
    /// Run the next op(s) with probability `p`, else jump over `skip` ops.
    Maybe {
        p: f64,
        skip: u32,
    },
    /// Start a loop at nesting `depth`; when it runs zero times, jump to `end` (the op after
    /// its [`Op::LoopEnd`]).
    LoopStart {
        depth: u8,
        repeat: Repeat,
        end: u32,
    },
    /// End of a loop body: jump back to `start + 1` while the loop goes on.
    LoopEnd {
        depth: u8,
        start: u32,
    },
    /// The `ws://` quick modes: run until the session ends (see [`Builtin`]).
    Builtin(Builtin),
}

/// The loops of `blaster run ws://…` modes, measured with a payload that carries its own
/// sequence number and intended send time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Builtin {
    /// Hold the session; ping every `ping_every` and time the pong.
    Hold { ping_every: Option<Duration> },
    /// Send `payload`-byte messages at `rate` per second (open model) and time each echo.
    Echo { rate: f64, payload: u32 },
    /// Publish `payload`-byte messages at `rate` per second to the session's topic.
    Publish { rate: f64, payload: u32 },
    /// Receive the topic's messages and time their delivery.
    Subscribe,
}

/// What kind of samples a step produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepClass {
    Http,
    WsConnect,
    WsSend,
    WsExpect,
    WsSubscribe,
    WsClose,
}

impl StepClass {
    pub fn name(self) -> &'static str {
        match self {
            StepClass::Http => "http",
            StepClass::WsConnect => "ws_connect",
            StepClass::WsSend => "ws_send",
            StepClass::WsExpect => "ws_expect",
            StepClass::WsSubscribe => "ws_subscribe",
            StepClass::WsClose => "ws_close",
        }
    }
}

/// A step that produces samples, with everything the worker needs to run it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepInfo {
    pub name: String,
    pub class: StepClass,
    pub scenario: usize,
    /// Static tags of its samples, sorted by key: `scenario`, `name`, `flow`, `group` (k6's
    /// `::a::b` path, when inside groups), `method` (HTTP), plus file and scenario tags.
    pub tags: Vec<(String, String)>,
    pub kind: StepKind,
    /// The ws:// quick modes' topic split: connect to `url` + `t{vu % topics}`.
    pub topics: Option<u32>,
    /// WebSocket subprotocols to offer (`--subprotocol`; scenario files use a
    /// `Sec-WebSocket-Protocol` header).
    pub protocols: Vec<String>,
}

impl StepInfo {
    /// The size limits of a ws_connect step's session (the decoder's defaults where the step
    /// sets none).
    pub fn ws_limits(&self) -> WsLimits {
        let default = WsLimits::default();
        match &self.kind {
            StepKind::WsConnect {
                max_frame,
                max_message,
                ..
            } => WsLimits {
                max_frame: max_frame.unwrap_or(default.max_frame),
                max_message: max_message.unwrap_or(default.max_message),
            },
            _ => default,
        }
    }

    pub fn http(&self) -> Option<&HttpStep> {
        match &self.kind {
            StepKind::Http(h) => Some(h),
            _ => None,
        }
    }

    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// One flow, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowPlan {
    pub name: String,
    pub weight: f64,
    pub ops: Vec<Op>,
}

/// One scenario: its executor and flows.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioPlan {
    pub name: String,
    pub executor: Executor,
    pub start: Duration,
    pub graceful_stop: Duration,
    pub flows: Vec<FlowPlan>,
    /// VUs of a VU-based executor start at this many per second (all workers together)
    /// instead of all at once (`--connect-rate` of the ws:// quick modes).
    pub vu_start_rate: Option<f64>,
    /// A VU whose iteration failed waits this long before the next (reconnect backoff).
    pub backoff: Backoff,
    /// Global number of this scenario's first VU (VU numbers are unique across scenarios).
    pub first_vu: u64,
}

impl ScenarioPlan {
    pub fn weights(&self) -> Vec<f64> {
        self.flows.iter().map(|f| f.weight).collect()
    }

    /// When the executor stops starting iterations, from the run's start.
    pub fn end(&self) -> Duration {
        self.start + self.executor.duration()
    }

    /// When running iterations are cut off, from the run's start.
    pub fn hard_end(&self) -> Duration {
        self.end() + self.graceful_stop
    }
}

/// Everything a VU run needs.
#[derive(Debug, Clone)]
pub struct Plan {
    pub scenarios: Vec<ScenarioPlan>,
    pub steps: Vec<StepInfo>,
    /// The scenario file (templates, data sources, thresholds, options).
    pub file: Arc<ScenarioFile>,
    /// Default request timeout.
    pub timeout: Duration,
    /// Workers publish metric snapshots every interval (abort-on-fail thresholds and the
    /// breakpoint search evaluate them during the run).
    pub live: bool,
    /// The breakpoint search, when the file asks for one.
    pub breakpoint: Option<BreakpointPlan>,
}

/// A breakpoint search: the scenario's arrival rate steps through `rates`, each held for
/// `step`, until an abort-on-fail threshold fails on one step's samples.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakpointPlan {
    pub scenario: usize,
    pub rates: Vec<f64>,
    pub step: Duration,
}

/// How long a breakpoint step takes to move to its rate (the rest of the step holds it).
const BREAKPOINT_RAMP: Duration = Duration::from_millis(1);

impl Plan {
    /// When the last scenario stops starting iterations (for progress).
    pub fn load_duration(&self) -> Duration {
        self.scenarios
            .iter()
            .map(ScenarioPlan::end)
            .max()
            .unwrap_or_default()
    }

    /// How long the whole run lasts at most: the latest scenario's hard end.
    pub fn max_duration(&self) -> Duration {
        self.scenarios
            .iter()
            .map(ScenarioPlan::hard_end)
            .max()
            .unwrap_or_default()
    }

    /// Compiles a validated scenario file.
    pub fn compile(file: Arc<ScenarioFile>) -> Result<Plan, String> {
        let mut steps = Vec::new();
        let mut scenarios = Vec::new();
        let mut first_vu = 1;
        for (si, spec) in file.scenarios.iter().enumerate() {
            let mut base_tags: BTreeMap<String, String> = file.options.tags.clone();
            base_tags.extend(spec.tags.clone());
            base_tags.insert("scenario".into(), spec.name.clone());
            let mut flows = Vec::new();
            for flow in &spec.flows {
                let mut tags = base_tags.clone();
                tags.insert("flow".into(), flow.name.clone());
                let mut ctx = Ctx {
                    steps: &mut steps,
                    scenario: si,
                    tags,
                };
                let mut ops = Vec::new();
                compile_steps(&flow.steps, &mut ctx, &mut ops, 0, "")?;
                flows.push(FlowPlan {
                    name: flow.name.clone(),
                    weight: flow.weight,
                    ops,
                });
            }
            scenarios.push(ScenarioPlan {
                name: spec.name.clone(),
                executor: spec.executor.clone(),
                start: spec.start_time,
                graceful_stop: spec.graceful_stop,
                flows,
                vu_start_rate: None,
                backoff: spec.error_backoff,
                first_vu,
            });
            first_vu += spec.executor.max_vus();
        }
        let mut breakpoint = None;
        if let Some(crate::scenario::model::Special::Breakpoint {
            scenario,
            start_rate,
            step_rate,
            step_duration,
            max_rate,
        }) = &file.special
        {
            let si = scenarios
                .iter()
                .position(|s| &s.name == scenario)
                .ok_or_else(|| format!("special.breakpoint names no scenario \"{scenario}\""))?;
            let mut rates = Vec::new();
            let mut r = *start_rate;
            while r <= *max_rate + 1e-9 && rates.len() < 10_000 {
                rates.push(r);
                r += step_rate;
            }
            let mut stages = Vec::new();
            for (k, &rate) in rates.iter().enumerate() {
                let ramp = if k == 0 {
                    Duration::ZERO
                } else {
                    BREAKPOINT_RAMP
                };
                if k > 0 {
                    stages.push(crate::scenario::model::Stage {
                        duration: ramp,
                        target: rate,
                    });
                }
                stages.push(crate::scenario::model::Stage {
                    duration: step_duration.saturating_sub(ramp),
                    target: rate,
                });
            }
            let (pre, max) = match &scenarios[si].executor {
                Executor::ConstantArrivalRate {
                    pre_allocated_vus,
                    max_vus,
                    ..
                }
                | Executor::RampingArrivalRate {
                    pre_allocated_vus,
                    max_vus,
                    ..
                } => (*pre_allocated_vus, *max_vus),
                other => (other.max_vus(), other.max_vus().max(1000)),
            };
            scenarios[si].executor = Executor::RampingArrivalRate {
                start_rate: rates[0],
                stages,
                pre_allocated_vus: pre,
                max_vus: max,
            };
            breakpoint = Some(BreakpointPlan {
                scenario: si,
                rates,
                step: *step_duration,
            });
        }
        Ok(Plan {
            scenarios,
            steps,
            timeout: file.options.timeout,
            live: breakpoint.is_some() || file.thresholds.iter().any(|t| t.abort_on_fail),
            breakpoint,
            file,
        })
    }
}

struct Ctx<'a> {
    steps: &'a mut Vec<StepInfo>,
    scenario: usize,
    tags: BTreeMap<String, String>,
}

impl Ctx<'_> {
    fn add(&mut self, name: &str, class: StepClass, kind: &StepKind, group: &str) -> u32 {
        let mut tags = self.tags.clone();
        tags.insert("name".into(), name.to_owned());
        if !group.is_empty() {
            tags.insert("group".into(), group.to_owned());
        }
        if let StepKind::Http(h) = kind {
            tags.insert("method".into(), h.method.clone());
        }
        self.steps.push(StepInfo {
            name: name.to_owned(),
            class,
            scenario: self.scenario,
            tags: tags.into_iter().collect(),
            kind: kind.clone(),
            topics: None,
            protocols: Vec::new(),
        });
        (self.steps.len() - 1) as u32
    }
}

fn compile_steps(
    steps: &[Step],
    ctx: &mut Ctx<'_>,
    ops: &mut Vec<Op>,
    depth: usize,
    group: &str,
) -> Result<(), String> {
    for step in steps {
        let maybe_at = (step.probability < 1.0).then(|| {
            ops.push(Op::Maybe {
                p: step.probability,
                skip: 0,
            });
            ops.len() - 1
        });
        let kind = &step.kind;
        match kind {
            StepKind::Http(h) => {
                let id = ctx.add(&h.name, StepClass::Http, kind, group);
                ops.push(Op::Http(id));
            }
            StepKind::WsConnect { name, .. } => {
                let id = ctx.add(name, StepClass::WsConnect, kind, group);
                ops.push(Op::WsConnect(id));
            }
            StepKind::WsSend { name, .. } => {
                let id = ctx.add(name, StepClass::WsSend, kind, group);
                ops.push(Op::WsSend(id));
            }
            StepKind::WsExpect { name, .. } => {
                let id = ctx.add(name, StepClass::WsExpect, kind, group);
                ops.push(Op::WsExpect(id));
            }
            StepKind::WsSubscribe { name, .. } => {
                let id = ctx.add(name, StepClass::WsSubscribe, kind, group);
                ops.push(Op::WsSubscribe(id));
            }
            StepKind::WsClose { .. } => {
                let id = ctx.add("ws_close", StepClass::WsClose, kind, group);
                ops.push(Op::WsClose(id));
            }
            StepKind::Sleep(t) => ops.push(Op::Sleep(*t)),
            StepKind::SleepFor(t) => ops.push(Op::SleepFor(t.clone())),
            StepKind::Group { name, steps } => {
                let path = format!("{group}::{name}");
                compile_steps(steps, ctx, ops, depth, &path)?;
            }
            StepKind::Loop { repeat, steps } => {
                if depth >= MAX_LOOP_DEPTH {
                    return Err(format!(
                        "loops nest more than {MAX_LOOP_DEPTH} deep; flatten the innermost ones"
                    ));
                }
                let start = ops.len();
                ops.push(Op::LoopStart {
                    depth: depth as u8,
                    repeat: *repeat,
                    end: 0,
                });
                compile_steps(steps, ctx, ops, depth + 1, group)?;
                ops.push(Op::LoopEnd {
                    depth: depth as u8,
                    start: start as u32,
                });
                let end = ops.len() as u32;
                if let Op::LoopStart { end: e, .. } = &mut ops[start] {
                    *e = end;
                }
            }
        }
        if let Some(at) = maybe_at {
            let skip = (ops.len() - at - 1) as u32;
            if let Op::Maybe { skip: s, .. } = &mut ops[at] {
                *s = skip;
            }
        }
    }
    Ok(())
}

/// A literal template (the ws:// quick modes build their steps from CLI values).
pub fn literal(text: &str) -> Template {
    use crate::scenario::model::Segment;
    Template {
        segments: vec![Segment::Literal(text.to_owned())],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::parse_str;

    fn compile(src: &str) -> Plan {
        let file = parse_str(src, std::path::Path::new("t.toml"), &BTreeMap::new(), false)
            .expect("valid scenario");
        Plan::compile(Arc::new(file)).expect("compiles")
    }

    #[test]
    fn loops_groups_and_probability_become_jumps() {
        let plan = compile(
            r#"
[scenarios.s]
executor = "constant-vus"
vus = 1
duration = "1s"
[[scenarios.s.steps]]
request = "GET http://127.0.0.1:1/a"
probability = 0.5
[[scenarios.s.steps]]
loop = 3
[[scenarios.s.steps.steps]]
group = "g"
[[scenarios.s.steps.steps.steps]]
request = "GET http://127.0.0.1:1/b"
name = "b"
"#,
        );
        let ops = &plan.scenarios[0].flows[0].ops;
        assert_eq!(
            ops,
            &vec![
                Op::Maybe { p: 0.5, skip: 1 },
                Op::Http(0),
                Op::LoopStart {
                    depth: 0,
                    repeat: Repeat::Count(3),
                    end: 5
                },
                Op::Http(1),
                Op::LoopEnd { depth: 0, start: 2 },
            ]
        );
        let b = &plan.steps[1];
        assert_eq!(b.name, "b");
        assert_eq!(b.tag("group"), Some("::g"));
        assert_eq!(b.tag("scenario"), Some("s"));
        assert_eq!(b.tag("method"), Some("GET"));
    }

    #[test]
    fn exponential_backoff_doubles_up_to_its_cap_with_jitter() {
        let b = Backoff::Exponential {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert_eq!(
            b.delay(1, 0.999_999),
            Duration::from_millis(100).mul_f64(0.999_999_5)
        );
        assert_eq!(b.delay(3, 0.0), Duration::from_millis(200));
        assert_eq!(b.delay(20, 0.0), Duration::from_millis(500));
        assert_eq!(
            Backoff::Fixed(Duration::from_secs(2)).delay(9, 0.3),
            Duration::from_secs(2)
        );
    }
}
