//! Status conditions: set by type, `lastTransitionTime` moving only when the status flips.

use crate::api::Condition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub use crate::model::reason::condition::*;

/// Sets (or adds) condition `type_`, keeping its transition time unless the status changed.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: &Time,
) {
    let status = if status { "True" } else { "False" };
    set_status(conditions, type_, status, reason, message, generation, now);
}

/// Sets (or adds) condition `type_` with a status of `True`, `False` or `Unknown`.
pub fn set_status(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: &Time,
) {
    let status = status.to_string();
    let message = message.into();
    match conditions
        .iter_mut()
        .find(|condition| condition.type_ == type_)
    {
        Some(condition) => {
            if condition.status != status {
                condition.last_transition_time = now.clone();
            }
            condition.status = status;
            condition.reason = reason.to_string();
            condition.message = message;
            condition.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message,
            last_transition_time: now.clone(),
            observed_generation: generation,
        }),
    }
}

/// Removes condition `type_` if present.
pub fn remove(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|condition| condition.type_ != type_);
}

/// Finds condition `type_`.
pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|condition| condition.type_ == type_)
}

/// True when condition `type_` is present with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    get(conditions, type_).is_some_and(|condition| condition.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).expect("valid"))
    }

    #[test]
    fn transition_time_moves_only_on_flip() {
        let mut conditions = Vec::new();
        set(&mut conditions, READY, true, "A", "m", Some(1), &at(10));
        set(&mut conditions, READY, true, "B", "m2", Some(2), &at(20));
        assert_eq!(conditions[0].last_transition_time, at(10));
        assert_eq!(conditions[0].reason, "B");
        assert_eq!(conditions[0].observed_generation, Some(2));
        set(&mut conditions, READY, false, "C", "m3", Some(2), &at(30));
        assert_eq!(conditions[0].last_transition_time, at(30));
        assert_eq!(conditions.len(), 1);
        assert!(!is_true(&conditions, READY));
        remove(&mut conditions, READY);
        assert!(conditions.is_empty());
    }
}
