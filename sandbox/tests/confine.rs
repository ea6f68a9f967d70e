//! A sandboxed child process tries everything the sandbox forbids, and is refused each time while the work it
//! may do (reading, writing its folder, threads, Unix socket pairs) goes on. Each rule that the kernel here
//! offers is checked; one it lacks must be named as missing in the report.

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

use afx_sandbox::{EXIT_MEMORY, EXIT_THREADS, Folder, Policy, Report};

const CHILD: &str = "AFX_SANDBOX_TEST_CHILD";

/// Runs the ignored test `child` of this binary with `mode`, sandboxed in `folder`.
fn run_child(mode: &str, folder: &Folder, extra_env: &[(&str, String)]) -> Output {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args(["--ignored", "--exact", "child", "--nocapture", "--test-threads=1"]);
    command.env(CHILD, mode).env("AFX_SANDBOX_TEST_DIR", folder.path());
    command.envs(folder.env());
    for (k, v) in extra_env {
        command.env(k, v);
    }
    command.output().unwrap()
}

fn report_of(out: &Output) -> Report {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find_map(|l| l.strip_prefix("REPORT ")).unwrap_or_else(|| panic!("no report:\n{text}"));
    serde_json::from_str(line).unwrap()
}

/// The body of the children of the tests below (ignored: a normal run neither runs nor counts it).
#[test]
#[ignore = "the body of a child process of the tests in this file"]
fn child() {
    let mode = std::env::var(CHILD).expect("run as a child, with its mode in AFX_SANDBOX_TEST_CHILD");
    let dir = std::env::var("AFX_SANDBOX_TEST_DIR").unwrap();
    let policy = Policy { writable: dir.clone().into(), memory: Some(256 << 20), threads: Some(64) };
    let report = afx_sandbox::apply(&policy);
    println!("\nREPORT {}", serde_json::to_string(&report).unwrap());
    let errno = |e: &std::io::Error| e.raw_os_error().unwrap_or(0);
    match mode.as_str() {
        "rules" => {
            let outside = std::env::var("AFX_SANDBOX_TEST_OUTSIDE").unwrap();
            match std::fs::write(&outside, "escaped") {
                Ok(()) => println!("WRITE-OUTSIDE ok"),
                Err(e) => println!("WRITE-OUTSIDE {}", errno(&e)),
            }
            println!("WRITE-INSIDE {}", std::fs::write(Path::new(&dir).join("settings.ini"), "x").is_ok());
            println!("READ {}", std::fs::read("/etc/hostname").is_ok() || std::fs::read("/etc/passwd").is_ok());
            let port: u16 = std::env::var("AFX_SANDBOX_TEST_PORT").unwrap().parse().unwrap();
            match std::net::TcpStream::connect(("127.0.0.1", port)) {
                Ok(mut s) => println!("CONNECT ok {:?}", s.write_all(b"hello")),
                Err(e) => println!("CONNECT {}", errno(&e)),
            }
            println!("UNIX-PAIR {}", std::os::unix::net::UnixStream::pair().is_ok());
            // SAFETY: fork in a test child; the grandchild only sleeps briefly and exits.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                // SAFETY: the forked child ends at once.
                unsafe { libc::_exit(0) };
            }
            println!("FORK {}", if pid < 0 { std::io::Error::last_os_error().raw_os_error().unwrap() } else { 0 });
            println!("SPAWN {}", Command::new("/bin/true").status().is_ok());
            let threads: Vec<_> = (0..8).map(|i| std::thread::spawn(move || i * 2)).collect();
            println!("THREADS {}", threads.into_iter().map(|t| t.join().unwrap()).sum::<i32>());
        }
        "memory" => {
            let mut kept: Vec<Vec<u8>> = vec![];
            for _ in 0..4096 {
                let mut chunk = vec![0u8; 16 << 20];
                chunk.iter_mut().step_by(4096).for_each(|b| *b = 1);
                kept.push(std::hint::black_box(chunk));
            }
            println!("ALLOCATED {} MiB without a cap", kept.len() * 16);
        }
        "threads" => {
            let spawned: Vec<_> = (0..1000)
                .map_while(|_| std::thread::Builder::new().stack_size(64 << 10).spawn(std::thread::park).ok())
                .collect();
            std::thread::sleep(std::time::Duration::from_secs(5));
            println!("SPAWNED {}", spawned.len());
        }
        "cpu" => {
            // What a worker gives each job, here one second; then compute without end, as a runaway thread would.
            afx_sandbox::cpu_budget(1);
            let mut x = 0u64;
            let start = std::time::Instant::now();
            while start.elapsed() < std::time::Duration::from_secs(30) {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            println!("COMPUTED for 30 s without a cap ({x})");
        }
        other => panic!("unknown mode {other}"),
    }
}

#[test]
fn a_sandboxed_child_writes_only_its_folder_reaches_no_network_and_starts_no_process() {
    let folder = Folder::new("afx-sandbox-test-").unwrap();
    let outside_dir = tempfile::tempdir().unwrap();
    let outside = outside_dir.path().join("escaped.txt");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let out = run_child(
        "rules",
        &folder,
        &[("AFX_SANDBOX_TEST_OUTSIDE", outside.display().to_string()), ("AFX_SANDBOX_TEST_PORT", port)],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}\n{}", text, String::from_utf8_lossy(&out.stderr));
    let report = report_of(&out);
    let said = |key: &str| text.lines().find_map(|l| l.strip_prefix(&format!("{key} "))).unwrap_or("").to_string();
    eprintln!("report: {report}");

    // The work a plugin may do goes on.
    assert_eq!(said("WRITE-INSIDE"), "true", "{text}");
    assert_eq!(said("READ"), "true", "{text}");
    assert_eq!(said("UNIX-PAIR"), "true", "{text}");
    assert_eq!(said("THREADS"), "56", "{text}");
    // What it may not: each with the error a denied call returns, and nothing reached.
    assert!(!outside.exists(), "the child wrote outside its folder");
    assert_eq!(said("WRITE-OUTSIDE"), libc::EACCES.to_string(), "{text}");
    assert!(listener.accept().is_err(), "the loopback listener received a connection");
    assert_ne!(said("CONNECT").split(' ').next(), Some("ok"), "{text}");
    assert_eq!(said("FORK"), libc::EPERM.to_string(), "{text}");
    assert_eq!(said("SPAWN"), "false", "{text}");
    for rule in ["filesystem", "sockets", "processes", "memory", "threads", "network"] {
        assert!(report.enforced.iter().any(|l| l.starts_with(rule)), "{rule} is not in force here: {report}");
    }
}

#[test]
fn the_memory_cap_ends_a_child_that_allocates_without_bound_with_its_own_exit_code() {
    let folder = Folder::new("afx-sandbox-test-").unwrap();
    let out = run_child("memory", &folder, &[]);
    assert_eq!(out.status.code(), Some(EXIT_MEMORY), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("memory cap exceeded"));
}

#[test]
fn the_thread_cap_ends_a_child_that_starts_a_thousand_threads() {
    let folder = Folder::new("afx-sandbox-test-").unwrap();
    let out = run_child("threads", &folder, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_THREADS), "{stderr}");
    assert!(stderr.contains("thread cap 64 exceeded"), "{stderr}");
}

#[test]
fn the_cpu_cap_ends_a_child_that_computes_past_its_budget() {
    let folder = Folder::new("afx-sandbox-test-").unwrap();
    let out = run_child("cpu", &folder, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(afx_sandbox::EXIT_CPU), "{stderr}");
    assert!(stderr.contains("CPU time cap exceeded"), "{stderr}");
}
