//! A rules bot's menu as configured: stateless options whose id carries its
//! kind and resource (`sel:<uuid>`), at most 256 characters, titles at most
//! 20 characters, ids unique. How a menu is shown and how an answer selects
//! an option is the router's business (`switchyard_router::bots::menu`).

use serde::Deserialize;

pub const MAX_OPTION_ID_CHARS: usize = 256;
pub const MAX_OPTION_TITLE_CHARS: usize = 20;
pub const OPTION_ID_PREFIX: &str = "sel:";

/// One menu option as configured for a tenant.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MenuOption {
    pub id: String,
    pub title: String,
    pub reply: String,
}

/// A tenant's menu.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Menu {
    #[serde(default)]
    pub title: String,
    pub options: Vec<MenuOption>,
}

/// Why a configured menu is unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MenuError {
    #[error("option id {0:?} must start with \"sel:\" and be 5..=256 characters")]
    BadId(String),
    #[error("option title {0:?} is longer than 20 characters")]
    TitleTooLong(String),
    #[error("option id {0:?} appears twice")]
    DuplicateId(String),
}

impl Menu {
    /// Checks every option against the limits.
    pub fn validate(&self) -> Result<(), MenuError> {
        let mut seen = std::collections::HashSet::new();
        for option in &self.options {
            let len = option.id.chars().count();
            if !option.id.starts_with(OPTION_ID_PREFIX) || !(5..=MAX_OPTION_ID_CHARS).contains(&len)
            {
                return Err(MenuError::BadId(option.id.clone()));
            }
            if option.title.chars().count() > MAX_OPTION_TITLE_CHARS {
                return Err(MenuError::TitleTooLong(option.title.clone()));
            }
            if !seen.insert(option.id.as_str()) {
                return Err(MenuError::DuplicateId(option.id.clone()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn menu() -> Menu {
        Menu {
            title: "Pick one".into(),
            options: vec![
                MenuOption {
                    id: "sel:aaa".into(),
                    title: "Hours".into(),
                    reply: "9-5".into(),
                },
                MenuOption {
                    id: "sel:bbb".into(),
                    title: "Prices".into(),
                    reply: "cheap".into(),
                },
            ],
        }
    }

    #[test]
    fn long_titles_and_bad_ids_are_rejected() {
        let mut m = menu();
        m.options[0].title = "x".repeat(21);
        assert!(matches!(m.validate(), Err(MenuError::TitleTooLong(_))));
        let mut m = menu();
        m.options[0].id = format!("sel:{}", "x".repeat(300));
        assert!(matches!(m.validate(), Err(MenuError::BadId(_))));
        let mut m = menu();
        m.options[1].id = "sel:aaa".into();
        assert!(matches!(m.validate(), Err(MenuError::DuplicateId(_))));
    }
}
