//! Repository chores behind `cargo xtask …` (rust-analyzer's xtask pattern):
//! installing the system packages slokit needs (and the Python example's
//! virtual environment), the full test suite CI runs, and the demo the
//! README starts with. Plain std, so it builds before any
//! system package is present.

use std::env;
use std::fs;
use std::path::Path;
use std::process::{Command, ExitCode};

/// Debian packages slokit needs, with the reason for each.
const SYSTEM_PACKAGES: &[(&str, &str)] = &[
    (
        "clang",
        "compiles the eBPF monitor (scheduler-core/src/bpf)",
    ),
    ("libelf-dev", "libbpf (vendored by libbpf-sys) links libelf"),
    ("zlib1g-dev", "libbpf (vendored by libbpf-sys) links zlib"),
    ("pkg-config", "finds libelf and zlib for libbpf-sys"),
    ("make", "builds the vendored libbpf"),
    (
        "bpftool",
        "generates vmlinux.h from the running kernel's BTF",
    ),
    (
        "python3",
        "the las hand-off test runs a Python server whose main thread receives and a worker thread replies",
    ),
    (
        "chromium",
        "the report test opens the HTML report in a headless browser",
    ),
    (
        "valgrind",
        "counts instructions for `--metric instructions` where no hardware counter is exposed",
    ),
    (
        "python3-venv",
        "creates examples/python/.venv, the Python example's runtime (gunicorn, pyaes from PyPI)",
    ),
];

const USAGE: &str = "\
cargo xtask <command>

  setup            install (or check) the system packages slokit needs and
                   the Python example's venv (examples/python/.venv)
  test             setup, then format check, clippy -D warnings, all tests
  demo [ARGS...]   setup, then `slokit compare` on the embedded defaults
  bench            setup, then every criterion benchmark";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("setup") => setup_all(),
        Some("test") => setup_all().and_then(|()| test()),
        Some("demo") => setup_all().and_then(|()| demo(&args[1..])),
        Some("bench") => setup_all().and_then(|()| cargo(&["bench", "--workspace"])),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The system packages, then the Python example's virtual environment.
fn setup_all() -> Result<(), String> {
    setup()?;
    python_example()
}

/// Creates `examples/python/.venv` and installs `requirements.txt` into it
/// with pip (from PyPI), unless the environment already holds exactly
/// those requirements (a copy is kept in the venv).
fn python_example() -> Result<(), String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/python");
    let requirements = dir.join("requirements.txt");
    let wanted = fs::read_to_string(&requirements)
        .map_err(|e| format!("cannot read {}: {e}", requirements.display()))?;
    let venv = dir.join(".venv");
    let installed = venv.join("slokit-requirements.txt");
    if fs::read_to_string(&installed).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(());
    }
    if !venv.join("bin/python").exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "-q", "--disable-pip-version-check", "-r"])
        .arg(&requirements))?;
    fs::write(&installed, wanted).map_err(|e| format!("cannot write {}: {e}", installed.display()))
}

/// Installs the missing packages with apt-get when running as root;
/// otherwise names them and the command to run.
fn setup() -> Result<(), String> {
    let missing: Vec<&str> = SYSTEM_PACKAGES
        .iter()
        .filter(|(p, _)| !installed(p))
        .map(|(p, _)| *p)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    for (p, why) in SYSTEM_PACKAGES.iter().filter(|(p, _)| missing.contains(p)) {
        eprintln!("xtask: missing {p}: {why}");
    }
    if Command::new("apt-get").arg("--version").output().is_err() {
        return Err(format!(
            "apt-get not found: install these packages with your package manager: {}",
            missing.join(" ")
        ));
    }
    if !is_root() {
        return Err(format!(
            "not root: run `sudo apt-get install -y {}` and try again",
            missing.join(" ")
        ));
    }
    eprintln!("xtask: installing {}", missing.join(" "));
    run(Command::new("apt-get").args(["update", "-q"]))?;
    run(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing))
}

fn test() -> Result<(), String> {
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    cargo(&["test", "--workspace", "--all-targets"])?;
    cargo(&["test", "--workspace", "--doc"])
}

fn demo(extra: &[String]) -> Result<(), String> {
    let mut args = vec!["run", "--release", "--bin", "slokit", "--", "compare"];
    args.extend(extra.iter().map(String::as_str));
    cargo(&args)
}

fn cargo(args: &[&str]) -> Result<(), String> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(Command::new(cargo).args(args))
}

fn run(cmd: &mut Command) -> Result<(), String> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed with {status}"))
    }
}
