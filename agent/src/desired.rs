//! [`Desired`]: the Instances bound to one node, by key, as the agent last knew them. Two
//! sources feed it — the Instance watch and the answers to the agent's own status writes — and
//! the watch lags behind the writes: a short run can be started, reported `Running`, end and be
//! reported `Finished` before the watch delivers its `Staging`. So an Instance is only ever
//! replaced by a newer one (a higher `resourceVersion`, which is the store revision of its last
//! write): taking a stale watch event would make the agent start a finished instance again, or
//! report a `Running` one it no longer runs as lost.

use std::collections::HashMap;

use pacer_schemas::Instance;

use crate::launch::InstanceKey;

/// The Instances of one node, never going back to an older version of any of them.
#[derive(Debug, Default)]
pub struct Desired {
    instances: HashMap<InstanceKey, Instance>,
}

impl Desired {
    /// The Instance of `key`, if it exists.
    pub fn get(&self, key: &InstanceKey) -> Option<&Instance> {
        self.instances.get(key)
    }

    /// Every key.
    pub fn keys(&self) -> impl Iterator<Item = &InstanceKey> {
        self.instances.keys()
    }

    /// How many Instances.
    pub fn len(&self) -> usize {
        self.instances.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    /// A watch event's Instance: taken unless the one held is newer. Returns its key.
    pub fn apply(&mut self, instance: Instance) -> InstanceKey {
        let key = InstanceKey::of(&instance);
        if self.newer_than_held(&key, &instance) {
            self.instances.insert(key.clone(), instance);
        }
        key
    }

    /// The Instance a status write answered with: taken only when it is a newer version of
    /// the very Instance held (the same uid): one the watch has seen deleted stays deleted, and
    /// one recreated under the same name meanwhile is not replaced by the old one's answer.
    pub fn remember(&mut self, written: Instance) {
        let key = InstanceKey::of(&written);
        if self
            .instances
            .get(&key)
            .is_some_and(|held| is_newer(&written, held))
        {
            self.instances.insert(key, written);
        }
    }

    /// A watch's deletion. Returns its key.
    pub fn remove(&mut self, instance: &Instance) -> InstanceKey {
        let key = InstanceKey::of(instance);
        self.instances.remove(&key);
        key
    }

    /// A complete listing: exactly these Instances from now on, each at the newer of its
    /// listed version and the one held.
    pub fn replace_all(&mut self, listing: HashMap<InstanceKey, Instance>) {
        let mut held = std::mem::take(&mut self.instances);
        for (key, listed) in listing {
            let instance = match held.remove(&key) {
                Some(current) if is_newer(&current, &listed) => current,
                _ => listed,
            };
            self.instances.insert(key, instance);
        }
    }

    /// Whether `incoming` is not older than what is held for `key` (an Instance without a
    /// numeric version is always taken).
    fn newer_than_held(&self, key: &InstanceKey, incoming: &Instance) -> bool {
        self.instances
            .get(key)
            .is_none_or(|held| !is_newer(held, incoming))
    }
}

/// Whether `left` is a strictly newer version of the object than `right` (the same object:
/// same uid, or either has none).
fn is_newer(left: &Instance, right: &Instance) -> bool {
    let same_object = match (&left.metadata.uid, &right.metadata.uid) {
        (Some(left), Some(right)) => left == right,
        _ => true,
    };
    same_object
        && match (revision(left), revision(right)) {
            (Some(left), Some(right)) => left > right,
            _ => false,
        }
}

/// The Instance's `resourceVersion` as a number.
fn revision(instance: &Instance) -> Option<u64> {
    instance
        .metadata
        .resource_version
        .as_deref()
        .and_then(|version| version.parse().ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use pacer_schemas::ObjectMeta;
    use pacer_schemas::instance::{InstancePhase, InstanceStatus};

    use super::*;

    fn at(revision: u64, phase: InstancePhase) -> Instance {
        let mut metadata = ObjectMeta::named("default", "job-1");
        metadata.uid = Some("uid-1".to_owned());
        metadata.resource_version = Some(revision.to_string());
        Instance {
            metadata,
            status: Some(InstanceStatus {
                phase,
                ..InstanceStatus::default()
            }),
            ..Instance::default()
        }
    }

    fn phase(desired: &Desired) -> InstancePhase {
        let key = desired.keys().next().unwrap().clone();
        desired.get(&key).unwrap().phase()
    }

    /// A run that ends before the watch catches up: the watch's late events of the start do
    /// not take the agent back to them.
    #[test]
    fn late_watch_events_do_not_undo_the_agents_own_writes() {
        let mut desired = Desired::default();
        desired.apply(at(1, InstancePhase::Scheduled));
        desired.remember(at(2, InstancePhase::Staging));
        desired.remember(at(4, InstancePhase::Running));
        desired.remember(at(5, InstancePhase::Finished));
        for (revision, late) in [
            (2, InstancePhase::Staging),
            (3, InstancePhase::Starting),
            (4, InstancePhase::Running),
        ] {
            desired.apply(at(revision, late));
            assert_eq!(phase(&desired), InstancePhase::Finished, "after {late:?}");
        }
        desired.apply(at(5, InstancePhase::Finished));
        desired.apply(at(6, InstancePhase::Gone));
        assert_eq!(phase(&desired), InstancePhase::Gone);
    }

    #[test]
    fn a_relist_keeps_the_newer_version_and_drops_what_it_does_not_list() {
        let mut desired = Desired::default();
        desired.apply(at(1, InstancePhase::Scheduled));
        desired.remember(at(7, InstancePhase::Finished));
        let mut other = at(3, InstancePhase::Running);
        other.metadata.name = Some("job-2".to_owned());
        desired.apply(other);
        assert_eq!(desired.len(), 2);

        let listed = at(5, InstancePhase::Running);
        desired.replace_all(HashMap::from([(InstanceKey::of(&listed), listed)]));
        assert_eq!(desired.len(), 1);
        assert_eq!(phase(&desired), InstancePhase::Finished);

        let newer = at(9, InstancePhase::Gone);
        desired.replace_all(HashMap::from([(InstanceKey::of(&newer), newer)]));
        assert_eq!(phase(&desired), InstancePhase::Gone);
    }

    #[test]
    fn a_recreated_instance_replaces_the_deleted_one_and_deletions_stay() {
        let mut desired = Desired::default();
        desired.apply(at(8, InstancePhase::Finished));
        // Same name, new object (its revision could even compare lower in a test store).
        let mut recreated = at(2, InstancePhase::Scheduled);
        recreated.metadata.uid = Some("uid-2".to_owned());
        desired.apply(recreated);
        assert_eq!(phase(&desired), InstancePhase::Scheduled);

        let gone = at(3, InstancePhase::Scheduled);
        desired.remove(&gone);
        assert!(desired.is_empty());
        // A write's answer after the watch saw the deletion does not bring it back.
        desired.remember(at(4, InstancePhase::Killed));
        assert!(desired.is_empty());

        // Nor does the deleted one's late answer replace the one recreated under its name.
        let mut recreated = at(12, InstancePhase::Scheduled);
        recreated.metadata.uid = Some("uid-2".to_owned());
        desired.apply(recreated);
        desired.remember(at(10, InstancePhase::Running));
        desired.remember(at(13, InstancePhase::Running));
        assert_eq!(phase(&desired), InstancePhase::Scheduled);
        let key = desired.keys().next().unwrap().clone();
        assert_eq!(
            desired.get(&key).unwrap().metadata.uid.as_deref(),
            Some("uid-2")
        );
    }
}
