//! `Condition`: one aspect of an object's observed state, in the shape of Kubernetes'
//! `metav1.Condition` (`type`, `status`, `reason`, `message`, `lastTransitionTime`,
//! `observedGeneration`), so that `kubectl wait --for=condition=…` works.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::time::Time;
use crate::wire_enum::wire_enum;

wire_enum! {
    /// Whether a condition holds.
    pub enum ConditionStatus {
        /// The condition holds.
        True = "True",
        /// The condition does not hold.
        False = "False",
        /// Not known yet.
        Unknown = "Unknown",
    }
}

/// One observed aspect of an object, e.g. `Available`, `Progressing`, `Ready`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition name in CamelCase, e.g. `Available`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: ConditionStatus,
    /// The `metadata.generation` this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When `status` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// Machine-readable CamelCase reason for the last transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Condition {
    /// A condition with a type and status and nothing else.
    pub fn new(type_: impl Into<String>, status: ConditionStatus) -> Self {
        Self {
            type_: type_.into(),
            status,
            observed_generation: None,
            last_transition_time: None,
            reason: None,
            message: None,
        }
    }

    /// Whether the status is `True`.
    pub fn is_true(&self) -> bool {
        self.status == ConditionStatus::True
    }
}

/// Finds the condition of `type_` in `conditions`.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|condition| condition.type_ == type_)
}

/// Inserts or replaces the condition of the same type. `lastTransitionTime` is kept from the
/// old condition when `status` did not change, as Kubernetes' `meta.SetStatusCondition` does.
pub fn set_condition(conditions: &mut Vec<Condition>, mut condition: Condition) {
    match conditions
        .iter_mut()
        .find(|existing| existing.type_ == condition.type_)
    {
        Some(existing) => {
            if existing.status == condition.status {
                condition.last_transition_time = existing.last_transition_time;
            }
            *existing = condition;
        }
        None => conditions.push(condition),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn set_condition_keeps_transition_time_when_status_is_unchanged() {
        let t1 = Time::from_unix_seconds(1).unwrap();
        let t2 = Time::from_unix_seconds(2).unwrap();
        let mut conditions = Vec::new();
        let mut ready = Condition::new("Ready", ConditionStatus::True);
        ready.last_transition_time = Some(t1);
        set_condition(&mut conditions, ready.clone());

        ready.last_transition_time = Some(t2);
        ready.message = Some("still".into());
        set_condition(&mut conditions, ready.clone());
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, Some(t1));
        assert_eq!(conditions[0].message.as_deref(), Some("still"));

        ready.status = ConditionStatus::False;
        set_condition(&mut conditions, ready);
        assert_eq!(conditions[0].last_transition_time, Some(t2));
        assert!(!find_condition(&conditions, "Ready").unwrap().is_true());
        assert!(find_condition(&conditions, "Other").is_none());
    }
}
