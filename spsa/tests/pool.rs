//! The pool and the estimators on real plugins (Debian's ZamEQ2 and afx's own test effect) and a real
//! recording: agreement with finite differences, unbiasedness, determinism across worker counts and isolation,
//! and survival of crashing, hanging and NaN-producing plugins.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use afx_host::Audio;
use afx_spsa::worker::Executor;
use afx_spsa::{
    FailureKind, Isolation, Job, Pool, PoolConfig, Renderer, Task, WorkerCommand, WorkerSpec, item_seed, item_seeds,
};
use afx_testkit::{TESTFX_PLUGINS_TOML, amen_mono, cosine, head, testfx};

struct Setup {
    config: PathBuf,
    lv2_path: String,
    _dir: tempfile::TempDir,
}

/// ZamEQ2's three band gains trained, beside the test effect's [`TESTFX_PLUGINS_TOML`] (`fx`, `fx_nan`).
const EQ_CONFIG: &str = r#"
[plugins.eq]
format = "lv2"
id = "urn:zamaudio:ZamEQ2"
params.boost1 = { train = true, min = -12.0, max = 12.0 }
params.boostl = { train = true, min = -12.0, max = 12.0 }
params.boosth = { train = true, min = -12.0, max = 12.0 }
"#;

/// The test effect built and packaged, a plugins.toml naming it and ZamEQ2, and `LV2_PATH` covering both.
fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("plugins.toml");
        std::fs::write(&config, format!("{EQ_CONFIG}{TESTFX_PLUGINS_TOML}")).unwrap();
        let lv2_path = format!("{}:/usr/lib/lv2:/usr/local/lib/lv2", testfx().lv2.display());
        // SAFETY: every test calls `setup()` before anything in this process reads the environment (lilv reads
        // LV2_PATH when a thread-isolated worker makes its host), and OnceLock runs this once, before any of
        // them proceeds: no other thread reads or writes the environment concurrently.
        unsafe { std::env::set_var("LV2_PATH", &lv2_path) };
        Setup { config, lv2_path, _dir: dir }
    })
}

fn spec(chain: &str) -> WorkerSpec {
    WorkerSpec::new(Some(setup().config.clone()), chain)
}

fn process() -> Isolation {
    Isolation::Process(WorkerCommand::new(env!("CARGO_BIN_EXE_afx-worker")).env("LV2_PATH", &setup().lv2_path))
}

fn pool(chain: &str, isolation: Isolation, workers: usize) -> Pool {
    let mut config = PoolConfig::new(spec(chain), isolation);
    config.workers = workers;
    Pool::new(config).unwrap()
}

/// A quarter second of a real drum recording.
fn clip() -> Arc<Audio> {
    Arc::new(head(&amen_mono(), 11_025))
}

/// Direct, in-process render at θ.
fn render(chain: &str, input: &Audio, theta: &[f32]) -> Audio {
    let mut executor = Executor::new(&spec(chain)).unwrap();
    let job = Job::Render { hop: 0, input: Arc::new(input.clone()), theta: theta.to_vec() };
    executor.run(&job).unwrap().into_audio().unwrap()
}

/// ∂L/∂y of L = mean((y − target)²), as audio.
fn mse_grad(y: &Audio, target: &Audio) -> Audio {
    let n = (y.frames() * y.num_channels()) as f32;
    let g = y
        .channels()
        .iter()
        .zip(target.channels())
        .map(|(a, b)| a.iter().zip(b).map(|(a, b)| 2.0 * (a - b) / n).collect());
    Audio::new(y.sample_rate(), g.collect()).unwrap()
}

/// The upstream gradient at θ towards the render at θ*.
fn problem(chain: &str, theta: &[f32], theta_star: &[f32]) -> (Arc<Audio>, Arc<Audio>) {
    let input = clip();
    let target = render(chain, &input, theta_star);
    let y = render(chain, &input, theta);
    let g = mse_grad(&y, &target);
    (input, Arc::new(g))
}

fn gradient(result: Result<afx_spsa::JobOutput, afx_spsa::ItemError>) -> Vec<f32> {
    result.unwrap().into_gradient().unwrap()
}

#[test]
fn pool_renders_equal_direct_renders_in_order_with_processes_and_threads() {
    let input = clip();
    let thetas: Vec<Vec<f32>> = (0..5).map(|i| vec![0.1 + 0.2 * i as f32, 0.5, 0.9 - 0.15 * i as f32]).collect();
    let expected: Vec<Audio> = thetas.iter().map(|t| render("eq", &input, t)).collect();
    for isolation in [process(), Isolation::Thread] {
        let mut pool = pool("eq", isolation, 2);
        assert_eq!(pool.num_params(), 3);
        let jobs = thetas.iter().map(|t| Job::Render { hop: 0, input: input.clone(), theta: t.clone() }).collect();
        for (result, want) in pool.run(jobs).into_iter().zip(&expected) {
            assert_eq!(&result.unwrap().into_audio().unwrap(), want);
        }
    }
}

#[test]
fn spsa_with_64_perturbations_points_where_finite_differences_do() {
    for (chain, theta, theta_star) in
        [("eq", [0.3, 0.6, 0.45], [0.7, 0.4, 0.55]), ("fx", [0.3, 0.6, 0.45], [0.6, 0.3, 0.7])]
    {
        let (input, g) = problem(chain, &theta, &theta_star);
        let mut pool = pool(chain, process(), 2);
        let jobs = vec![
            Job::FiniteDifference { hop: 0, input: input.clone(), theta: theta.to_vec(), grad: g.clone(), step: 1e-2 },
            Job::Spsa {
                hop: 0,
                scoring: afx_spsa::estimator::Scoring::Whole,
                input,
                theta: theta.to_vec(),
                grad: g,
                epsilon: 1e-2,
                perturbations: 64,
                seed: 11,
            },
        ];
        let mut results = pool.run(jobs).into_iter();
        let fd = gradient(results.next().unwrap());
        let spsa = gradient(results.next().unwrap());
        let c = cosine(&fd, &spsa);
        eprintln!("{chain}: FD {fd:?} SPSA(K=64) {spsa:?} cosine {c:.4}");
        assert!(fd.iter().any(|v| v.abs() > 1e-6), "{chain}: zero gradient, the test would prove nothing");
        assert!(c >= 0.9, "{chain}: cosine {c}");
    }
}

#[test]
fn single_perturbation_spsa_is_unbiased_its_mean_converges_to_finite_differences() {
    let (theta, theta_star) = ([0.3f32, 0.6, 0.45], [0.7f32, 0.4, 0.55]);
    let (input, g) = problem("eq", &theta, &theta_star);
    let mut pool = pool("eq", process(), 2);
    let fd = gradient(
        pool.run(vec![Job::FiniteDifference {
            hop: 0,
            input: input.clone(),
            theta: theta.to_vec(),
            grad: g.clone(),
            step: 1e-2,
        }])
        .remove(0),
    );
    let runs = 600;
    let jobs = (0..runs).map(|i| spsa_job(&input, &theta, &g, 1, item_seed(5, i))).collect();
    let estimates: Vec<Vec<f32>> = pool.run(jobs).into_iter().map(gradient).collect();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let fd64: Vec<f64> = fd.iter().map(|&x| f64::from(x)).collect();
    let error_of_mean = |n: usize| {
        let mean: Vec<f64> =
            (0..3).map(|p| estimates[..n].iter().map(|e| f64::from(e[p])).sum::<f64>() / n as f64).collect();
        let diff: Vec<f64> = mean.iter().zip(&fd64).map(|(m, f)| m - f).collect();
        norm(&diff) / norm(&fd64)
    };
    let (one, some, all) = (error_of_mean(1), error_of_mean(40), error_of_mean(runs));
    eprintln!("relative error of the mean of K=1 estimates: 1 -> {one:.3}, 40 -> {some:.3}, {runs} -> {all:.3}");
    // One estimate is far off (P = 3: each coordinate picks up the others' terms); the mean closes in.
    assert!(one > 0.3, "a single estimate is suspiciously exact: {one}");
    assert!(all < 0.1, "the mean of {runs} unbiased estimates should be within 10% of FD: {all}");
    assert!(all < some, "the error did not shrink with more estimates");
}

#[test]
fn the_same_seed_gives_identical_gradients_whatever_the_workers_and_isolation() {
    let (theta, theta_star) = ([0.3f32, 0.6, 0.45], [0.6f32, 0.3, 0.7]);
    let (input, g) = problem("fx", &theta, &theta_star);
    let jobs = || {
        let thetas: Vec<Vec<f32>> = (0..6).map(|i| theta.iter().map(|t| t + 0.02 * i as f32).collect()).collect();
        // Items that share their audio, as a caller's batch would hand them over.
        (vec![input.clone(); 6], thetas, vec![g.clone(); 6])
    };
    let mut runs = vec![];
    for (isolation, workers) in [(process(), 1), (process(), 2), (Isolation::Thread, 1), (Isolation::Thread, 2)] {
        let mut pool = pool("fx", isolation, workers);
        let (inputs, thetas, grads) = jobs();
        let batch = pool.spsa_batch(&inputs, &thetas, &grads, 1e-2, 2, &item_seeds(42, inputs.len()));
        runs.push(batch.into_iter().map(Result::unwrap).collect::<Vec<_>>());
    }
    for run in &runs[1..] {
        assert_eq!(run, &runs[0]);
    }
}

/// Eight render jobs on the test effect; item 3 sits at the top of the drive range, where an armed fault fires.
fn fault_batch(input: &Arc<Audio>) -> Vec<Job> {
    (0..8)
        .map(|i| {
            let drive = if i == 3 { 1.0 } else { 0.1 * i as f32 };
            Job::Render { hop: 0, input: input.clone(), theta: vec![drive, 0.5, 0.5] }
        })
        .collect()
}

#[test]
fn a_crashing_hanging_or_nan_item_fails_alone_and_the_pool_stays_healthy() {
    let input = clip();
    let healthy = fault_batch(&input);
    // What the healthy items must give, rendered directly (no fault armed in this process).
    let expected: Vec<Audio> = healthy.iter().map(|j| render("fx", &input, j.theta())).collect();
    for (mode, expect) in [
        ("abort", FailureKind::Crashed { signal: Some(6), code: None }),
        ("segfault", FailureKind::Crashed { signal: Some(11), code: None }),
        ("hang", FailureKind::TimedOut { after: Duration::from_secs(2) }),
        ("nan", FailureKind::NonFinite(String::new())),
    ] {
        let command = WorkerCommand::new(env!("CARGO_BIN_EXE_afx-worker"))
            .env("LV2_PATH", &setup().lv2_path)
            .env("AFX_TESTFX_FAULT", mode);
        let mut config = PoolConfig::new(spec("fx"), Isolation::Process(command));
        config.workers = 2;
        // A hang is found by the time limit, so it is short there. A crash or a NaN must be found by its own
        // event (the worker's death, its answer), not by a limit running out: their limit is generous, and one
        // noticed only when it ran out would come back as a time-out, not as the kind expected below.
        config.job_timeout = if mode == "hang" { Duration::from_secs(2) } else { Duration::from_secs(120) };
        let mut pool = Pool::new(config).unwrap();
        let results = pool.run(fault_batch(&input));
        for (i, (result, want)) in results.iter().zip(&expected).enumerate() {
            if i != 3 {
                assert_eq!(result.as_ref().unwrap().clone().into_audio().as_ref(), Some(want), "{mode}: item {i}");
                continue;
            }
            let error = result.as_ref().unwrap_err();
            eprintln!("{mode}: {error}");
            match (&error.kind, &expect) {
                (FailureKind::NonFinite(m), FailureKind::NonFinite(_)) => assert!(m.contains("NaN"), "{m}"),
                (got, want) => assert_eq!(got, want, "{mode}"),
            }
            assert_eq!(error.chain, "fx");
            assert_eq!(error.theta, vec![1.0, 0.5, 0.5]);
            if mode != "nan" {
                assert!(error.stderr.contains("deliberate"), "{mode}: stderr not captured: {:?}", error.stderr);
            }
            assert!(error.to_string().contains("θ = [1.0000, 0.5000, 0.5000]"), "{error}");
        }
        // The next batch, without the faulty item, runs on the (replaced) workers as if nothing happened.
        let mut next = fault_batch(&input);
        next[3] = Job::Render { hop: 0, input: input.clone(), theta: vec![0.3, 0.5, 0.5] };
        for (i, result) in pool.run(next).into_iter().enumerate() {
            let audio = result.unwrap_or_else(|e| panic!("{mode}: next batch item {i}: {e}")).into_audio().unwrap();
            if i != 3 {
                assert_eq!(&audio, &expected[i]);
            }
        }
    }
}

#[test]
fn nan_in_thread_mode_is_a_failed_item_and_an_empty_batch_is_fine() {
    let input = clip();
    // `fx_nan` fixes the test effect's fault parameter at 4 (NaN): every render is non-finite.
    let mut pool = pool("fx_nan", Isolation::Thread, 2);
    assert!(pool.run(vec![]).is_empty());
    for _ in 0..2 {
        let results = pool.run(fault_batch(&input));
        assert_eq!(results.len(), 8);
        for r in results {
            assert!(matches!(r.unwrap_err().kind, FailureKind::NonFinite(_)));
        }
    }
}

#[test]
fn a_bad_chain_fails_when_the_pool_starts_with_the_workers_message() {
    let mut config = PoolConfig::new(spec("no_such_chain"), process());
    config.workers = 1;
    let error = Pool::new(config).err().expect("a pool on an unknown chain started").to_string();
    assert!(error.contains("no_such_chain") && error.contains("did you mean"), "{error}");
}

/// A task as a crate above the pool would write one: the request is θ (little-endian f32), the reply the
/// render of [`clip`] at θ (little-endian f32 samples).
struct RenderClip;

const RENDER_CLIP: &str = "render-clip";

impl Task for RenderClip {
    fn name(&self) -> &'static str {
        RENDER_CLIP
    }

    fn run(&mut self, request: &[u8], renderer: &mut Renderer<'_>) -> Result<Vec<u8>, FailureKind> {
        let theta: Vec<f32> = request.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        let input = clip();
        let mut output = Audio::silence(input.sample_rate(), 1, 0);
        renderer.render(&input, &theta, &mut output)?;
        Ok(output.channel(0).iter().flat_map(|x| x.to_le_bytes()).collect())
    }
}

fn render_clip_task() -> Vec<Box<dyn Task>> {
    vec![Box::new(RenderClip)]
}

fn task_job(name: &str, theta: &[f32]) -> Job {
    Job::Task { name: name.into(), request: theta.iter().flat_map(|x| x.to_le_bytes()).collect(), renders: 1 }
}

#[test]
fn a_task_renders_like_a_render_job_and_a_worker_without_it_names_it() {
    let input = clip();
    let thetas = [vec![0.2, 0.5, 0.9], vec![0.8, 0.1, 0.4]];
    let mut config = PoolConfig::new(spec("eq"), Isolation::Thread);
    (config.workers, config.tasks) = (2, render_clip_task);
    let mut threads = Pool::new(config).unwrap();
    let mut jobs: Vec<Job> = thetas.iter().map(|t| task_job(RENDER_CLIP, t)).collect();
    jobs.push(task_job("no-such-task", &thetas[0]));
    let results = threads.run(jobs.clone());
    for (result, theta) in results.iter().zip(&thetas) {
        let bytes = result.as_ref().unwrap().clone().into_bytes().unwrap();
        let want: Vec<u8> = render("eq", &input, theta).channel(0).iter().flat_map(|x| x.to_le_bytes()).collect();
        assert!(bytes == want, "the task's render differs from a render job's at {theta:?}");
    }
    let error = results[2].as_ref().unwrap_err().to_string();
    assert!(error.contains("no-such-task"), "{error}");
    // The afx-worker program knows no task: each task job fails alone, naming it, and the pool goes on.
    let mut processes = pool("eq", process(), 1);
    for result in processes.run(jobs) {
        let error = result.unwrap_err().to_string();
        assert!(error.contains(RENDER_CLIP) || error.contains("no-such-task"), "{error}");
    }
    assert!(processes.run(vec![Job::Render { hop: 0, input: input.clone(), theta: thetas[0].clone() }])[0].is_ok());
    // A task's render reports non-finite output as a render job does.
    let mut config = PoolConfig::new(spec("fx_nan"), Isolation::Thread);
    (config.workers, config.tasks) = (1, render_clip_task);
    let result = Pool::new(config).unwrap().run(vec![task_job(RENDER_CLIP, &[0.5, 0.5, 0.5])]).remove(0);
    assert!(matches!(result.unwrap_err().kind, FailureKind::NonFinite(_)));
}

#[test]
fn run_each_hands_over_every_result_once_and_draws_jobs_only_a_few_ahead() {
    let input = clip();
    let theta = |i: usize| vec![(i % 10) as f32 / 10.0, 0.5, 1.0 - (i % 7) as f32 / 7.0];
    for isolation in [process(), Isolation::Thread] {
        let mut pool = pool("eq", isolation, 2);
        let drawn = std::sync::atomic::AtomicUsize::new(0);
        let jobs = (0..40).map(|i| {
            drawn.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Job::Render { hop: 0, input: input.clone(), theta: theta(i) }
        });
        let mut seen = vec![0; 40];
        let mut drawn_at_first = None;
        pool.run_each(jobs, |index, result| {
            drawn_at_first.get_or_insert(drawn.load(std::sync::atomic::Ordering::SeqCst));
            seen[index] += 1;
            if index % 13 == 0 {
                assert_eq!(result.unwrap().into_audio().unwrap(), render("eq", &input, &theta(index)));
            }
        });
        assert!(seen.iter().all(|&n| n == 1), "{seen:?}");
        // Per worker two jobs in flight and one just finished, two in the feed, one being handed to it: 9; a
        // pool that collected its jobs first would have drawn all 40. (Slots that keep running while this
        // thread is descheduled could draw a few more: the bound leaves room for that.)
        let drawn_at_first = drawn_at_first.unwrap();
        assert!(drawn_at_first < 20, "{drawn_at_first} of 40 jobs drawn before the first result");
    }
}

/// An SPSA job of fixed parameters, ε = 0.01.
fn spsa_job(input: &Arc<Audio>, theta: &[f32], g: &Arc<Audio>, k: u32, seed: u64) -> Job {
    let (theta, grad, scoring) = (theta.to_vec(), g.clone(), afx_spsa::estimator::Scoring::Whole);
    Job::Spsa { input: input.clone(), theta, hop: 0, grad, epsilon: 1e-2, perturbations: k, seed, scoring }
}

/// One SPSA item as the pool would compute it unsplit, in this process.
fn spsa_direct(chain: &str, input: &Arc<Audio>, theta: &[f32], g: &Arc<Audio>, k: u32, seed: u64) -> Vec<f32> {
    let mut executor = Executor::new(&spec(chain)).unwrap();
    executor.run(&spsa_job(input, theta, g, k, seed)).unwrap().into_gradient().unwrap()
}

#[test]
fn an_spsa_item_split_over_workers_gives_the_unsplit_estimate_bit_for_bit() {
    let (theta, theta_star) = ([0.3f32, 0.6, 0.45], [0.6f32, 0.3, 0.7]);
    let (input, g) = problem("fx", &theta, &theta_star);
    let one_item = spsa_direct("fx", &input, &theta, &g, 16, 9);
    let thetas: Vec<Vec<f32>> = (0..5).map(|i| theta.iter().map(|t| t + 0.03 * i as f32).collect()).collect();
    let batch: Vec<Vec<f32>> =
        thetas.iter().enumerate().map(|(i, t)| spsa_direct("fx", &input, t, &g, 3, item_seed(4, i))).collect();
    for (isolation, workers) in [(process(), 1), (process(), 2), (Isolation::Thread, 2)] {
        let mut pool = pool("fx", isolation, workers);
        // One item of K = 16: split into parts (4 with 2 workers, 2 with one).
        let job = spsa_job(&input, &theta, &g, 16, 9);
        assert_eq!(gradient(pool.run(vec![job]).remove(0)), one_item, "{workers} workers");
        // Five items of K = 3: not split (at least two per worker); then one by one, each split.
        let whole = pool.spsa_batch(&vec![input.clone(); 5], &thetas, &vec![g.clone(); 5], 1e-2, 3, &item_seeds(4, 5));
        assert_eq!(whole.into_iter().map(Result::unwrap).collect::<Vec<_>>(), batch, "{workers} workers");
        for (i, t) in thetas.iter().enumerate() {
            let seeds = [item_seed(4, i)];
            use std::slice::from_ref;
            let alone = pool.spsa_batch(from_ref(&input), from_ref(t), from_ref(&g), 1e-2, 3, &seeds);
            assert_eq!(alone.into_iter().next().unwrap().unwrap(), batch[i], "item {i} alone, {workers} workers");
        }
    }
}

#[test]
fn renders_made_ahead_give_the_renders_and_the_spsa_estimates_bit_for_bit() {
    let (theta, theta_star) = ([0.3f32, 0.6, 0.45], [0.6f32, 0.3, 0.7]);
    let (input, g) = problem("fx", &theta, &theta_star);
    let thetas: Vec<Vec<f32>> = (0..3).map(|i| theta.iter().map(|t| t + 0.05 * i as f32).collect()).collect();
    let seeds = item_seeds(6, 3);
    let inputs = vec![input.clone(); 3];
    for (isolation, workers) in [(process(), 2), (Isolation::Thread, 1)] {
        let mut pool = pool("fx", isolation, workers);
        let rendered: Vec<Audio> = pool.render_batch(&inputs, &thetas).into_iter().map(Result::unwrap).collect();
        let estimates = pool.spsa_batch(&inputs, &thetas, &vec![g.clone(); 3], 1e-2, 3, &seeds);
        let mut ahead: Vec<Option<Audio>> = vec![None; 3];
        let renders = pool.render_perturbed_each(&inputs, &thetas, 1e-2, 3, &seeds, |i, y| {
            assert!(ahead[i].replace(y.unwrap()).is_none(), "item {i} reported twice");
        });
        assert_eq!(ahead.into_iter().map(Option::unwrap).collect::<Vec<_>>(), rendered, "{workers} workers");
        for (i, (renders, estimate)) in renders.into_iter().zip(estimates).enumerate() {
            let renders = renders.unwrap();
            assert_eq!(renders.shape(), (1, input.frames()));
            assert_eq!(renders.vjp(&[g.channel(0)]), estimate.unwrap(), "item {i}, {workers} workers");
        }
    }
}

#[test]
fn a_crash_in_a_part_of_a_split_item_fails_that_item_alone() {
    let (theta, theta_star) = ([0.3f32, 0.6, 0.45], [0.6f32, 0.3, 0.7]);
    let (input, g) = problem("fx", &theta, &theta_star);
    let command = WorkerCommand::new(env!("CARGO_BIN_EXE_afx-worker"))
        .env("LV2_PATH", &setup().lv2_path)
        .env("AFX_TESTFX_FAULT", "abort");
    let mut config = PoolConfig::new(spec("fx"), Isolation::Process(command));
    config.workers = 2;
    let mut pool = Pool::new(config).unwrap();
    // Two items of K = 8, each split in two parts; the second's drive sits where the armed fault fires.
    let faulty = vec![1.0, 0.5, 0.5];
    let job = |theta: &[f32]| spsa_job(&input, theta, &g, 8, 3);
    let mut results = pool.run(vec![job(&theta), job(&faulty)]).into_iter();
    assert_eq!(gradient(results.next().unwrap()), spsa_direct("fx", &input, &theta, &g, 8, 3));
    let error = results.next().unwrap().unwrap_err();
    assert_eq!(error.kind, FailureKind::Crashed { signal: Some(6), code: None }, "{error}");
    assert_eq!(error.theta, faulty);
    assert!(error.stderr.contains("deliberate"), "stderr not captured: {:?}", error.stderr);
    // The replaced workers serve the next batch.
    assert_eq!(gradient(pool.run(vec![job(&theta)]).remove(0)), spsa_direct("fx", &input, &theta, &g, 8, 3));
}

#[test]
fn a_job_too_large_for_a_frame_fails_alone_with_the_size_and_the_limit() {
    let input = clip();
    let mut pool = pool("eq", process(), 1);
    // 2 GiB + 1 of zeroes (mapped lazily: never touched). Before the check, its length prefix was written as
    // is, the worker refused the frame and died, and the item was reported as a crash after a retry.
    let request = vec![0u8; afx_spsa::wire::MAX_FRAME + 1];
    let jobs = vec![
        Job::Task { name: "big".into(), request, renders: 1 },
        Job::Render { hop: 0, input: input.clone(), theta: vec![0.2, 0.5, 0.9] },
    ];
    let mut results = pool.run(jobs).into_iter();
    // Refused when encoded, not by the worker: not a crash (a dead worker, a retry), nor a time-out.
    let error = results.next().unwrap().unwrap_err();
    assert!(matches!(error.kind, FailureKind::TooLarge(_)), "{error}");
    let message = error.to_string();
    assert!(message.contains(&afx_spsa::wire::MAX_FRAME.to_string()) && message.contains("exceeds"), "{message}");
    assert_eq!(results.next().unwrap().unwrap().into_audio().unwrap(), render("eq", &input, &[0.2, 0.5, 0.9]));
}
