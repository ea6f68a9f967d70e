//! The rules on what a child may touch (Linux): a network namespace, Landlock's filesystem, network and scope
//! rules, and a seccomp filter.

use std::collections::BTreeMap;
use std::path::Path;

use landlock::{
    ABI, Access, AccessFs, AccessNet, CompatLevel, Compatible, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
    Scope, path_beneath_rules,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
};

use crate::Report;

/// A network namespace of the child's own, with only a loopback that is down: no address outside is reachable,
/// the machine's loopback included. Root may make one; anyone else through a new user namespace, where the
/// kernel allows unprivileged ones.
pub(crate) fn network_namespace(report: &mut Report) {
    // SAFETY: unshare changes only this process's namespaces; the caller has one thread.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } == 0 {
        report.enforced.push("network: a namespace of its own (no interface up)".into());
        return;
    }
    // SAFETY: as above.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) } == 0 {
        report.enforced.push("network: a user and network namespace of its own (no interface up)".into());
        return;
    }
    report.missing.push(format!("network namespace: {}", std::io::Error::last_os_error()));
}

/// Landlock: read and execute everywhere, write only in `writable` (and to /dev/null); no TCP bind or connect
/// (ABI 4); no signals to processes outside and no connection to abstract Unix sockets outside (ABI 6).
pub(crate) fn landlock(writable: &Path, report: &mut Report) {
    let abi = ABI::V6;
    let ruleset = || -> Result<RulesetStatus, landlock::RulesetError> {
        let status = Ruleset::default()
            .set_compatibility(CompatLevel::BestEffort)
            .handle_access(AccessFs::from_all(abi))?
            .handle_access(AccessNet::from_all(abi))?
            .scope(Scope::from_all(abi))?
            .create()?
            .add_rules(path_beneath_rules(["/"], AccessFs::from_read(abi)))?
            .add_rules(path_beneath_rules([writable], AccessFs::from_all(abi)))?
            .add_rules(path_beneath_rules(["/dev/null"], AccessFs::from_file(abi)))?
            .restrict_self()?;
        Ok(status.ruleset)
    };
    let folder = writable.display();
    match ruleset() {
        Ok(RulesetStatus::FullyEnforced) => {
            report.enforced.push(format!("filesystem: writes only in {folder} (Landlock)"));
            report.enforced.push("TCP, signals and abstract sockets: none outside (Landlock)".into());
        }
        Ok(RulesetStatus::PartiallyEnforced) => {
            report.enforced.push(format!("filesystem: writes only in {folder} (Landlock, an older ABI: partly)"));
            report.missing.push("Landlock's TCP or scope rules: this kernel's ABI lacks them".into());
        }
        Ok(RulesetStatus::NotEnforced) => report.missing.push("filesystem rules: this kernel has no Landlock".into()),
        Err(e) => report.missing.push(format!("filesystem rules: Landlock failed: {e}")),
    }
}

/// A seccomp filter: `socket` of any family but AF_UNIX fails with EACCES; `fork`, `vfork` and a `clone` that
/// makes a process (no CLONE_THREAD) fail with EPERM; `clone3` fails with ENOSYS, which makes the C library
/// fall back to `clone`, where the flags can be read. Threads are made as before.
pub(crate) fn seccomp(report: &mut Report) {
    match install_filters() {
        Ok(()) => {
            report.enforced.push("sockets: Unix ones only (seccomp)".into());
            report.enforced.push("processes: none new, threads only (seccomp)".into());
        }
        Err(e) => report.missing.push(format!("seccomp filter: {e}")),
    }
}

fn install_filters() -> Result<(), String> {
    let arch = std::env::consts::ARCH.try_into().map_err(|e| format!("{e:?}"))?;
    let rule = |conditions: Vec<SeccompCondition>| SeccompRule::new(conditions).map_err(|e| e.to_string());
    let arg0 = |op, value| SeccompCondition::new(0, SeccompCmpArgLen::Dword, op, value).map_err(|e| e.to_string());
    let install = |rules: BTreeMap<i64, Vec<SeccompRule>>, errno: i32| -> Result<(), String> {
        let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(errno as u32), arch)
            .map_err(|e| e.to_string())?;
        let program: BpfProgram = filter.try_into().map_err(|e: seccompiler::BackendError| e.to_string())?;
        seccompiler::apply_filter(&program).map_err(|e| e.to_string())
    };
    let sockets =
        BTreeMap::from([(libc::SYS_socket, vec![rule(vec![arg0(SeccompCmpOp::Ne, libc::AF_UNIX as u64)?])?])]);
    install(sockets, libc::EACCES)?;
    let new_process = rule(vec![
        SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64), 0)
            .map_err(|e| e.to_string())?,
    ])?;
    #[allow(unused_mut)]
    let mut processes = BTreeMap::from([(libc::SYS_clone, vec![new_process])]);
    #[cfg(target_arch = "x86_64")]
    {
        processes.insert(libc::SYS_fork, vec![]);
        processes.insert(libc::SYS_vfork, vec![]);
    }
    install(processes, libc::EPERM)?;
    install(BTreeMap::from([(libc::SYS_clone3, vec![])]), libc::ENOSYS)
}
