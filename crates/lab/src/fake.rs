//! The gate's one stand-in for a node: it records what it is asked to run and with which
//! token, answers with a UPID (or the failure a test scripts), and serves the guest configs a
//! test puts in it. Clones share everything (the gate owns one clone, the test keeps another).
//! It must never run anything.

use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use steward_gate::{Authority, Executor, Failure, FailureKind, Guard, ObservedConfig};
use steward_model::{Action, GuestKind, Vmid};

/// What a dispatch answers: a UPID (or none), or a failure.
type Answer = Result<Option<String>, Failure>;

/// Records dispatches; runs nothing.
#[derive(Clone, Default)]
pub struct FakeExecutor {
    ran: Arc<Mutex<Vec<Action>>>,
    authorities: Arc<Mutex<Vec<Authority>>>,
    configs: Arc<Mutex<BTreeMap<u32, ObservedConfig>>>,
    answer: Arc<Mutex<Option<Answer>>>,
}

/// A lock that a panicking test left poisoned still holds its data.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FakeExecutor {
    /// A fake whose every dispatch answers `answer` instead of a UPID.
    pub fn answering(answer: Answer) -> FakeExecutor {
        let f = FakeExecutor::default();
        *lock(&f.answer) = Some(answer);
        f
    }

    /// The actions dispatched so far, in order.
    pub fn ran(&self) -> Vec<Action> {
        lock(&self.ran).clone()
    }

    /// How many actions were dispatched.
    pub fn count(&self) -> usize {
        lock(&self.ran).len()
    }

    /// The token each dispatch was asked to use, in order.
    pub fn authorities(&self) -> Vec<Authority> {
        lock(&self.authorities).clone()
    }

    /// Sets the config the node shows for `vmid`.
    pub fn set_config(&self, vmid: u32, config: ObservedConfig) {
        lock(&self.configs).insert(vmid, config);
    }
}

#[async_trait]
impl Executor for FakeExecutor {
    async fn dispatch(
        &self,
        action: &Action,
        _guard: &Guard,
        authority: Authority,
    ) -> Result<Option<String>, Failure> {
        lock(&self.ran).push(action.clone());
        lock(&self.authorities).push(authority);
        if let Some(answer) = lock(&self.answer).clone() {
            return answer;
        }
        Ok(Some(format!(
            "UPID:pve-a:00000001:00000001:00000001:{}:{}:root@pam!steward:",
            action.op_kind(),
            action.vmid()
        )))
    }

    async fn wait(&self, _upid: &str, _authority: Authority) -> Result<Vec<String>, Failure> {
        Ok(Vec::new())
    }

    async fn read_config(&self, _kind: GuestKind, vmid: Vmid) -> Result<ObservedConfig, Failure> {
        lock(&self.configs)
            .get(&vmid.get())
            .cloned()
            .ok_or_else(|| Failure::new(FailureKind::NotFound, "no such guest"))
    }
}
