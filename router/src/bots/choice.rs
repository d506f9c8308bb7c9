//! Reading an answer as a choice, statelessly: a tapped option arrives as its
//! id (`<prefix>:<resource>`), a typed number as the id it stood for (the
//! menu last shown, or, for an ambiguous sender, the picker, whose numbering
//! is recomputed from the sorted candidates). Either way the id's resource is
//! then checked again against the sender's own resources *in this tenant*
//! ([`SenderRole::resources`]): an id forged from another tenant's (or
//! another customer's) resource is [`Choice::Foreign`] and gets the refusal,
//! whatever a stored menu or the message says.

use switchyard_shared::flow::Action;

use super::sender_role::SenderRole;

/// What an answer selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Not an option id (free text, or a number that stands for nothing).
    None,
    /// An option id about one of the sender's own resources in this tenant.
    Owned(Action),
    /// An option id about a resource that is not the sender's here: refused.
    Foreign(Action),
}

impl Choice {
    /// Reads `text` against what the sender was last shown and who the sender is.
    pub fn read(text: &str, last_menu: &[String], role: &SenderRole) -> Self {
        let text = text.trim();
        let action = match text.parse::<usize>() {
            Ok(n) => {
                let index = n.checked_sub(1);
                let shown = index.and_then(|i| last_menu.get(i));
                match (shown, role) {
                    (Some(id), _) => Action::parse(id),
                    (None, SenderRole::Ambiguous { candidates }) => index
                        .and_then(|i| candidates.get(i))
                        .map(|r| Action::pick(r.clone())),
                    (None, _) => None,
                }
            }
            Err(_) => Action::parse(text),
        };
        match action {
            None => Self::None,
            Some(action) if role.resources().contains(&action.id) => Self::Owned(action),
            Some(action) => Self::Foreign(action),
        }
    }
}

#[cfg(test)]
mod tests {
    use switchyard_shared::contacts::ResourceId;

    use super::*;

    fn r(raw: &str) -> ResourceId {
        ResourceId::parse(raw).unwrap()
    }

    fn ambiguous() -> SenderRole {
        SenderRole::Ambiguous {
            candidates: vec![r("o1"), r("o2")],
        }
    }

    #[test]
    fn a_typed_number_picks_the_same_candidate_without_any_stored_menu() {
        assert_eq!(
            Choice::read("2", &[], &ambiguous()),
            Choice::Owned(Action::pick(r("o2")))
        );
        assert_eq!(Choice::read("3", &[], &ambiguous()), Choice::None);
        assert_eq!(Choice::read("0", &[], &ambiguous()), Choice::None);
    }

    #[test]
    fn a_number_maps_through_the_menu_last_shown_and_is_checked_again() {
        let shown = vec!["status:o1".to_owned(), "status:zz".to_owned()];
        assert_eq!(
            Choice::read("1", &shown, &ambiguous()),
            Choice::Owned(Action::parse("status:o1").unwrap())
        );
        assert_eq!(
            Choice::read("2", &shown, &ambiguous()),
            Choice::Foreign(Action::parse("status:zz").unwrap()),
            "a stored menu does not vouch for a resource"
        );
    }

    #[test]
    fn an_id_about_a_resource_not_the_senders_is_foreign() {
        assert_eq!(
            Choice::read("sel:other", &[], &ambiguous()),
            Choice::Foreign(Action::pick(r("other")))
        );
        assert_eq!(
            Choice::read("sel:o1", &[], &SenderRole::Unknown),
            Choice::Foreign(Action::pick(r("o1")))
        );
        assert_eq!(Choice::read("hello", &[], &ambiguous()), Choice::None);
    }
}
