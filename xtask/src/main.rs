//! `cargo xtask`: builds blaster's eBPF probe (see docs/PROBE.md).
//!
//! - `cargo xtask setup`: installs what the probe build needs (nightly `rust-src`,
//!   `bpf-linker` 0.13 linked against the nightly toolchain's own LLVM).
//! - `cargo xtask build-ebpf`: builds `blaster-ebpf` for `bpfel-unknown-none`.
//! - `cargo xtask build`: the eBPF object, then blaster with feature `probe`, the object embedded.
//! - `cargo xtask run -- <blaster args>`: `build`, then runs blaster.
//! - `cargo xtask test [-- <cargo test args>]`: the eBPF object, then
//!   `cargo test -p blaster --features probe probe`.
//!
//! Every step checks its prerequisites first and says exactly what is missing; every
//! command it runs is echoed, and every failure names the full command line.

use std::{
    env,
    ffi::OsString,
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{Context as _, Result, anyhow, bail};
use clap::{Parser, Subcommand};

/// The bpf-linker release line the probe is built with.
const BPF_LINKER_VERSION: &str = "0.13";
/// The target the eBPF crate is compiled for.
const BPF_TARGET: &str = "bpfel-unknown-none";
/// The environment variable through which blaster's `probe` feature finds the object.
const PROBE_OBJ_ENV: &str = "BLASTER_PROBE_OBJ";
/// LLVM majors that bpf-linker 0.13 has a cargo feature for.
const SUPPORTED_LLVM: &[u32] = &[21, 22, 23];

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build helper for blaster's eBPF probe")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install the probe's build prerequisites (nightly rust-src, bpf-linker 0.13).
    Setup {
        /// Reinstall bpf-linker even if a 0.13 one already works.
        #[arg(long)]
        force: bool,
    },
    /// Build the eBPF object (blaster-ebpf, nightly, bpfel-unknown-none, release).
    BuildEbpf,
    /// Build the eBPF object, then blaster with feature `probe` (the object embedded).
    Build {
        /// Build blaster in release mode.
        #[arg(long)]
        release: bool,
    },
    /// `build`, then run blaster with the given arguments.
    Run {
        /// Build blaster in release mode.
        #[arg(long)]
        release: bool,
        /// Arguments passed to blaster.
        #[arg(last = true)]
        args: Vec<OsString>,
    },
    /// Build the eBPF object, then `cargo test -p blaster --features probe probe`.
    Test {
        /// Fail (instead of skip) when the probe cannot load on this machine.
        #[arg(long)]
        require: bool,
        /// Extra arguments after `cargo test -p blaster --features probe`
        /// (default: `probe -- --nocapture`).
        #[arg(last = true)]
        args: Vec<OsString>,
    },
}

fn main() {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Setup { force } => setup(force),
        Cmd::BuildEbpf => build_ebpf().map(|_| ()),
        Cmd::Build { release } => build(release).map(|_| ()),
        Cmd::Run { release, args } => run(release, &args),
        Cmd::Test { require, args } => test(require, &args),
    };
    if let Err(e) = res {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

/// The workspace root (xtask lives one level below it).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent directory")
        .to_path_buf()
}

/// The path of the built eBPF object.
fn ebpf_object() -> PathBuf {
    root()
        .join("target/ebpf")
        .join(BPF_TARGET)
        .join("release/blaster-ebpf")
}

/// A command with the toolchain selection that `cargo xtask` itself was started with
/// removed, so that `cargo +nightly` and plain `cargo` pick what they should.
fn cmd(program: &str) -> Command {
    let mut c = Command::new(program);
    for var in [
        "RUSTUP_TOOLCHAIN",
        "RUSTC",
        "RUSTDOC",
        "RUSTC_WRAPPER",
        "CARGO_TARGET_DIR",
    ] {
        c.env_remove(var);
    }
    c
}

/// The command line of `c`, as a shell would show it (with the env vars set on it).
fn show(c: &Command) -> String {
    let mut s = String::new();
    for (k, v) in c.get_envs() {
        if let Some(v) = v {
            let _ = write!(
                s,
                "{}={} ",
                k.to_string_lossy(),
                v.to_string_lossy().replace('\x1f', "\\x1f")
            );
        }
    }
    if let Some(dir) = c.get_current_dir() {
        s.insert_str(0, &format!("(cd {} && ", dir.display()));
    }
    s.push_str(&c.get_program().to_string_lossy());
    for a in c.get_args() {
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains(char::is_whitespace) {
            let _ = write!(s, " '{a}'");
        } else {
            let _ = write!(s, " {a}");
        }
    }
    if c.get_current_dir().is_some() {
        s.push(')');
    }
    s
}

/// Runs `c` with inherited stdio; any failure names the command line.
fn exec(c: &mut Command) -> Result<()> {
    let line = show(c);
    eprintln!("+ {line}");
    let status = c
        .status()
        .with_context(|| format!("could not start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Runs `c` and returns its stdout; any failure names the command line.
fn output(c: &mut Command) -> Result<String> {
    let line = show(c);
    let out = c
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not start `{line}`"))?;
    if !out.status.success() {
        bail!(
            "`{line}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

// ---- prerequisite checks -------------------------------------------------------------

fn check_rustup() -> Result<()> {
    output(cmd("rustup").arg("--version"))
        .map(|_| ())
        .map_err(|e| {
            anyhow!(
                "rustup not found (the probe build needs it to select the nightly toolchain): {e:#}"
            )
        })
}

fn check_nightly() -> Result<()> {
    check_rustup()?;
    let list = output(cmd("rustup").args(["toolchain", "list"]))?;
    if !list.lines().any(|l| l.starts_with("nightly")) {
        bail!("nightly toolchain missing: run `rustup toolchain install nightly`");
    }
    Ok(())
}

/// The nightly toolchain's sysroot.
fn nightly_sysroot() -> Result<PathBuf> {
    let s = output(cmd("rustc").args(["+nightly", "--print", "sysroot"]))?;
    Ok(PathBuf::from(s.trim()))
}

/// The LLVM major version nightly rustc is built with.
fn nightly_llvm_major() -> Result<u32> {
    let v = output(cmd("rustc").args(["+nightly", "-vV"]))?;
    let line = v
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .ok_or_else(|| anyhow!("`rustc +nightly -vV` printed no `LLVM version:` line:\n{v}"))?;
    line.split('.')
        .next()
        .and_then(|m| m.trim().parse().ok())
        .ok_or_else(|| anyhow!("cannot parse the LLVM version `{line}` of `rustc +nightly -vV`"))
}

fn has_rust_src() -> Result<bool> {
    let l =
        output(cmd("rustup").args(["component", "list", "--installed", "--toolchain", "nightly"]))?;
    Ok(l.lines().any(|c| c.starts_with("rust-src")))
}

fn check_rust_src() -> Result<()> {
    if !has_rust_src()? {
        bail!(
            "nightly rust-src missing (needed for -Z build-std=core): run `cargo xtask setup` \
             (or `rustup component add rust-src --toolchain nightly`)"
        );
    }
    Ok(())
}

/// `Some(version line)` if a working bpf-linker is on PATH.
fn bpf_linker_version() -> Option<String> {
    output(cmd("bpf-linker").arg("--version"))
        .ok()
        .map(|s| s.trim().to_string())
}

fn check_bpf_linker() -> Result<()> {
    match bpf_linker_version() {
        None => bail!(
            "bpf-linker not found: run `cargo xtask setup` (bpf-linker must be on PATH, e.g. ~/.cargo/bin)"
        ),
        Some(v) if !is_wanted_linker(&v) => bail!(
            "bpf-linker is `{v}`, the probe needs {BPF_LINKER_VERSION}.x: run `cargo xtask setup --force`"
        ),
        Some(_) => Ok(()),
    }
}

fn is_wanted_linker(version_line: &str) -> bool {
    version_line.split_whitespace().nth(1).is_some_and(|v| {
        v == BPF_LINKER_VERSION || v.starts_with(&format!("{BPF_LINKER_VERSION}."))
    })
}

// ---- steps ---------------------------------------------------------------------------

fn setup(force: bool) -> Result<()> {
    let t0 = Instant::now();
    check_nightly()?;

    if has_rust_src()? {
        eprintln!("ok: nightly rust-src installed");
    } else {
        exec(cmd("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))?;
    }

    match bpf_linker_version() {
        Some(v) if !force && is_wanted_linker(&v) => {
            eprintln!("ok: {v} already installed (use --force to reinstall)");
        }
        found => {
            if let Some(v) = found {
                eprintln!("reinstalling bpf-linker (found `{v}`)");
            }
            install_bpf_linker()?;
        }
    }
    let v = bpf_linker_version().ok_or_else(|| {
        anyhow!("bpf-linker was installed but `bpf-linker --version` does not run: is ~/.cargo/bin on PATH?")
    })?;
    eprintln!("setup done in {:.0?}: {v}", t0.elapsed());
    Ok(())
}

/// Installs bpf-linker 0.13 built against an LLVM of the same major as nightly rustc's:
/// `$LLVM_PREFIX` if set, else a prefix made of links to nightly's own libLLVM.
fn install_bpf_linker() -> Result<()> {
    let major = nightly_llvm_major()?;
    if !SUPPORTED_LLVM.contains(&major) {
        bail!(
            "nightly rustc uses LLVM {major}, bpf-linker {BPF_LINKER_VERSION} supports LLVM {SUPPORTED_LLVM:?}: \
             install a nightly built with one of those"
        );
    }
    let prefix = match env::var_os("LLVM_PREFIX") {
        Some(p) => {
            let p = PathBuf::from(p);
            if !p.join("lib/libLLVM.so").exists() {
                bail!("LLVM_PREFIX={} has no lib/libLLVM.so", p.display());
            }
            eprintln!("using LLVM_PREFIX={}", p.display());
            p
        }
        None => nightly_llvm_prefix()?,
    };
    exec(
        cmd("cargo")
            .args(["install", "bpf-linker", "--version"])
            .arg(format!("~{BPF_LINKER_VERSION}"))
            .args(["--locked", "--force", "--no-default-features", "--features"])
            .arg(format!("llvm-{major}"))
            .env("LLVM_PREFIX", &prefix),
    )
}

/// Makes `$CARGO_HOME/blaster-llvm<major>/lib` with `libLLVM.so` (and its soname) linked
/// to the nightly toolchain's libLLVM. bpf-linker records that directory as its rpath, so
/// it has to outlive the install: it is not under /tmp or target/.
fn nightly_llvm_prefix() -> Result<PathBuf> {
    let major = nightly_llvm_major()?;
    let lib = nightly_sysroot()?.join("lib");
    // The real shared object is `libLLVM.so.<ver>-rust-<ver>` (its soname); the
    // `libLLVM-<major>-rust-*.so` beside it is a linker script, not a library.
    let real = fs::read_dir(&lib)
        .with_context(|| format!("cannot list {}", lib.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so."))
        })
        .ok_or_else(|| {
            anyhow!(
                "no libLLVM.so.* in {}: the nightly toolchain ships no shared LLVM; \
                 set LLVM_PREFIX to an LLVM {major} install (e.g. `apt-get install llvm-{major}-dev` \
                 and LLVM_PREFIX=/usr/lib/llvm-{major})",
                lib.display()
            )
        })?;
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .ok_or_else(|| anyhow!("neither CARGO_HOME nor HOME is set"))?;
    let prefix = cargo_home.join(format!("blaster-llvm{major}"));
    let dir = prefix.join("lib");
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let soname = real.file_name().expect("a file name");
    for name in [std::ffi::OsStr::new("libLLVM.so"), soname] {
        let link = dir.join(name);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&real, &link)
            .with_context(|| format!("cannot link {} -> {}", link.display(), real.display()))?;
    }
    eprintln!(
        "LLVM_PREFIX={} (links to {})",
        prefix.display(),
        real.display()
    );
    Ok(prefix)
}

fn build_ebpf() -> Result<PathBuf> {
    check_nightly()?;
    check_rust_src()?;
    check_bpf_linker()?;
    let root = root();
    exec(
        cmd("cargo")
            .current_dir(root.join("blaster-ebpf"))
            .args([
                "+nightly",
                "build",
                "--release",
                "-Z",
                "build-std=core",
                "--target",
                BPF_TARGET,
            ])
            .arg("--target-dir")
            .arg(root.join("target/ebpf"))
            // BTF for the maps and programs (aya reads it; the kernel checks it).
            .env(
                "CARGO_ENCODED_RUSTFLAGS",
                "-Cdebuginfo=2\x1f-Clink-arg=--btf",
            ),
    )?;
    let obj = ebpf_object();
    if !obj.exists() {
        bail!(
            "the eBPF build succeeded but {} does not exist",
            obj.display()
        );
    }
    eprintln!("eBPF object: {}", obj.display());
    Ok(obj)
}

fn build(release: bool) -> Result<PathBuf> {
    let obj = build_ebpf()?;
    let mut c = cmd("cargo");
    c.current_dir(root())
        .args(["build", "-p", "blaster", "--features", "probe"])
        .env(PROBE_OBJ_ENV, &obj);
    if release {
        c.arg("--release");
    }
    exec(&mut c)?;
    let bin = root()
        .join("target")
        .join(if release { "release" } else { "debug" })
        .join("blaster");
    eprintln!("blaster with the probe: {}", bin.display());
    Ok(bin)
}

fn run(release: bool, args: &[OsString]) -> Result<()> {
    let bin = build(release)?;
    exec(cmd(&bin.to_string_lossy()).args(args))
}

fn test(require: bool, args: &[OsString]) -> Result<()> {
    let obj = build_ebpf()?;
    let mut c = cmd("cargo");
    c.current_dir(root())
        .args(["test", "-p", "blaster", "--features", "probe"])
        .env(PROBE_OBJ_ENV, &obj);
    if require {
        c.env("BLASTER_PROBE_REQUIRE", "1");
    }
    if args.is_empty() {
        c.args(["probe", "--", "--nocapture"]);
    } else {
        c.args(args);
    }
    exec(&mut c)
}
