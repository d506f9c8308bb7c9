//! Rendering stateless flows: the picker an ambiguous sender gets and the
//! rules bot's chained steps (`bot_config.flow`). Every option's id carries
//! the next step and the resource (`<step>:<resource>`, the picker's
//! `sel:<resource>`), so the answer alone says what comes next; the ids are
//! also returned as the turn's `menu`, which only lets a typed number
//! stand for its id (the id is checked again when it comes back).

use switchyard_shared::{
    bot_config::{FlowConfig, Step, flow::RESOURCE_PLACEHOLDER},
    contacts::ResourceId,
    flow::{Action, ActionPrefix},
    replies::{ReplyMenu, ReplyOption},
};

use super::BotTurn;

/// The picker: one option per candidate, `sel:<resource>`, in the
/// candidates' (sorted) order.
pub fn picker(title: &str, candidates: &[ResourceId]) -> BotTurn {
    BotTurn::showing(ReplyMenu {
        title: title.to_owned(),
        options: candidates
            .iter()
            .map(|c| ReplyOption {
                id: Action::pick(c.clone()).to_string(),
                title: c.to_string(),
            })
            .collect(),
    })
}

fn fill(text: &str, resource: &ResourceId) -> String {
    text.replace(RESOURCE_PLACEHOLDER, resource.as_str())
}

/// The step `name` about `resource`: a menu whose ids lead on, or the
/// action's reply. `None` when the flow has no such step.
pub fn step(flow: &FlowConfig, name: &ActionPrefix, resource: &ResourceId) -> Option<BotTurn> {
    Some(match flow.steps.get(name)? {
        Step::Reply { reply } => BotTurn::say(fill(reply, resource)),
        Step::Menu { title, options } => BotTurn::showing(ReplyMenu {
            title: fill(title, resource),
            options: options
                .iter()
                .map(|o| ReplyOption {
                    id: Action::new(o.next.clone(), resource.clone()).to_string(),
                    title: fill(&o.title, resource),
                })
                .collect(),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steps_options_carry_the_next_step_and_the_resource() {
        let flow: FlowConfig = serde_json::from_value(serde_json::json!({
            "start": "order",
            "steps": {
                "order": {"title": "Order {resource}", "options": [
                    {"title": "Status", "next": "status"}, {"title": "Cancel", "next": "do_cancel"}]},
                "status": {"reply": "{resource} ships tomorrow"},
                "do_cancel": {"reply": "{resource} cancelled"}}
        }))
        .unwrap();
        let r = ResourceId::parse("A-7").unwrap();
        let turn = step(&flow, &flow.start, &r).unwrap();
        assert_eq!(turn.replies, vec!["Order A-7\n1. Status\n2. Cancel"]);
        assert_eq!(
            turn.menu.as_ref().map(ReplyMenu::ids),
            Some(vec!["status:A-7".to_owned(), "do_cancel:A-7".to_owned()])
        );
        let done = step(&flow, &ActionPrefix::parse("do_cancel").unwrap(), &r).unwrap();
        assert_eq!(done.replies, vec!["A-7 cancelled"]);
        assert!(step(&flow, &ActionPrefix::parse("nope").unwrap(), &r).is_none());
    }

    #[test]
    fn the_picker_numbers_candidates_and_carries_each_in_its_id() {
        let turn = picker(
            "Which one?",
            &[
                ResourceId::parse("o1").unwrap(),
                ResourceId::parse("o2").unwrap(),
            ],
        );
        assert_eq!(turn.replies, vec!["Which one?\n1. o1\n2. o2"]);
        assert_eq!(
            turn.menu.as_ref().map(ReplyMenu::ids),
            Some(vec!["sel:o1".to_owned(), "sel:o2".to_owned()])
        );
    }
}
