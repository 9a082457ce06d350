//! `blaster demo`: the built-in target on an ephemeral loopback port, a short load against it,
//! and the report. It needs no setup, so it is the README's first command.

use std::net::SocketAddr;

use anyhow::{Context, Result};

use crate::cli::{DemoArgs, available_cpus, finish_run, install_stop_signals};
use crate::config::{LoadModel, RequestSpec, RunConfig, ServeConfig, StopCondition};
use crate::report::progress::{Mode as ProgressMode, Progress};

/// Runs the demo and returns the exit code.
pub fn run(args: &DemoArgs) -> Result<i32> {
    let cpus = available_cpus();
    // Split the machine: half the CPUs serve, half generate load (one each on a 2-CPU box).
    let server_threads = (cpus / 2).max(1);
    let client_threads = (cpus - server_threads).max(1).min(args.connections);
    let listen: SocketAddr = "127.0.0.1:0".parse().expect("static address");
    let server = crate::target::spawn(ServeConfig {
        listen,
        threads: server_threads,
        ..ServeConfig::default()
    })
    .context("could not start the built-in target for the demo")?;
    let url = format!("http://{}/", server.addr());
    println!(
        "blaster demo: built-in target on {url} ({server_threads} thread(s)); {} connections from {client_threads} thread(s) for {:?}\n",
        args.connections, args.duration
    );
    let config = RunConfig {
        targets: vec![crate::cli::parse_target(&url)?],
        sources: Vec::new(),
        threads: client_threads,
        connections: args.connections,
        model: LoadModel::Closed,
        stop: StopCondition {
            duration: Some(args.duration),
            requests: None,
        },
        connect_rate: None,
        max_connecting: None,
        churn: None,
        pipeline: 1,
        timeout: std::time::Duration::from_secs(10),
        request: RequestSpec {
            method: "GET".into(),
            headers: Vec::new(),
            body: Vec::new(),
        },
        late_after: std::time::Duration::from_millis(1),
        report_interval: std::time::Duration::from_secs(1),
        command_line: std::env::args().collect(),
    };
    let stop = install_stop_signals()?;
    let mut progress = Progress::new(ProgressMode::detect(false), Some(args.duration));
    let outcome = crate::engine::run_observed(&config, stop, |point| progress.interval(point));
    progress.finish();
    let outcome = outcome?;
    drop(server);
    let outputs = crate::cli::Outputs {
        json: args.json.clone(),
        ..Default::default()
    };
    let code = finish_run(&config, &outcome, &outputs, false)?;
    println!(
        "\nNext: `blaster serve` in one terminal and `blaster run http://127.0.0.1:8080/ -c 100 -d 10s` in another."
    );
    Ok(code)
}
