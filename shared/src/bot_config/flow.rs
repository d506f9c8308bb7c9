//! A rules bot's chained menus (`bot_config.flow`), stateless: each step is
//! named by an action prefix, and an option's id is `<next step>:<resource>`,
//! so the answer alone says which step to show next and for what. Nothing is
//! stored between messages. Validated when the tenant row is loaded and by
//! the CLI: every `next` names a step, `start` exists, `sel` is reserved for
//! the picker.
//!
//! ```json
//! {"flow": {"start": "order",
//!   "steps": {
//!     "order":  {"title": "Order {resource}", "options": [{"title": "Status", "next": "status"}]},
//!     "status": {"reply": "Order {resource} ships tomorrow."}}}}
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;

use super::menu::MAX_OPTION_TITLE_CHARS;
use crate::flow::ActionPrefix;

/// Placeholder replaced by the resource in titles and replies.
pub const RESOURCE_PLACEHOLDER: &str = "{resource}";
/// The picker's title unless `flow.picker_title` is set.
pub const DEFAULT_PICKER_TITLE: &str = "Which one is this about?";

/// A tenant's chained menus.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowConfig {
    /// Shown above the numbered picker an ambiguous sender gets.
    #[serde(default = "default_picker_title")]
    pub picker_title: String,
    /// The step shown once the resource is known (after a pick, or at once
    /// for a sender with exactly one).
    pub start: ActionPrefix,
    pub steps: BTreeMap<ActionPrefix, Step>,
}

fn default_picker_title() -> String {
    DEFAULT_PICKER_TITLE.to_owned()
}

/// One step: a menu leading to further steps, or a final reply (an action).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum Step {
    Menu {
        #[serde(default)]
        title: String,
        options: Vec<FlowOption>,
    },
    Reply {
        reply: String,
    },
}

/// A menu option: its title and the step it leads to.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowOption {
    pub title: String,
    pub next: ActionPrefix,
}

/// Why a flow is unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FlowError {
    #[error("\"sel\" is the picker's prefix and cannot name a step")]
    ReservedStep,
    #[error("{0:?} is not one of the steps")]
    UnknownStep(String),
    #[error("option title {0:?} is longer than 20 characters")]
    TitleTooLong(String),
    #[error("step {0:?} is a menu without options")]
    EmptyMenu(String),
}

impl FlowConfig {
    /// Checks that every name leads somewhere and every title fits.
    pub fn validate(&self) -> Result<(), FlowError> {
        if !self.steps.contains_key(&self.start) {
            return Err(FlowError::UnknownStep(self.start.to_string()));
        }
        for (name, step) in &self.steps {
            if name.is_pick() {
                return Err(FlowError::ReservedStep);
            }
            let Step::Menu { options, .. } = step else {
                continue;
            };
            if options.is_empty() {
                return Err(FlowError::EmptyMenu(name.to_string()));
            }
            for option in options {
                if option.title.chars().count() > MAX_OPTION_TITLE_CHARS {
                    return Err(FlowError::TitleTooLong(option.title.clone()));
                }
                if !self.steps.contains_key(&option.next) {
                    return Err(FlowError::UnknownStep(option.next.to_string()));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: serde_json::Value) -> Result<(), String> {
        let flow: FlowConfig = serde_json::from_value(raw).map_err(|e| e.to_string())?;
        flow.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn a_flow_whose_names_lead_nowhere_is_refused() {
        let ok = serde_json::json!({"start": "a", "steps": {
            "a": {"title": "A", "options": [{"title": "B", "next": "b"}]},
            "b": {"reply": "done"}}});
        assert_eq!(parse(ok), Ok(()));
        let dangling = serde_json::json!({"start": "a", "steps": {
            "a": {"options": [{"title": "B", "next": "zz"}]}}});
        assert!(parse(dangling).unwrap_err().contains("zz"));
        let no_start = serde_json::json!({"start": "x", "steps": {"a": {"reply": "r"}}});
        assert!(parse(no_start).is_err());
        let reserved = serde_json::json!({"start": "sel", "steps": {"sel": {"reply": "r"}}});
        assert!(parse(reserved).unwrap_err().contains("picker"));
        let bad_name = serde_json::json!({"start": "A b", "steps": {}});
        assert!(parse(bad_name).is_err());
    }
}
