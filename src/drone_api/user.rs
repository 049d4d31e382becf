//! Who the Drone token belongs to (`GET /api/user`), and what that means for
//! the logs and the Restart button, as `check` says it: Drone answers 404
//! for a repository the user cannot see, and machine users see private
//! repositories only when they are admins.
use serde_json::Value;

use crate::text::{controls_to_spaces, cut_chars_marked};

/// The token's user, as `GET /api/user` answers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DroneUser {
    pub login: String,
    pub admin: bool,
    pub machine: bool,
    pub active: bool,
}

impl DroneUser {
    /// From Drone's user JSON; `None` when it has no `login`.
    pub(super) fn from_json(v: &Value) -> Option<DroneUser> {
        let login = v["login"].as_str().filter(|l| !l.is_empty())?;
        Some(DroneUser {
            login: cut_chars_marked(&controls_to_spaces(login), 100),
            admin: v["admin"].as_bool().unwrap_or(false),
            machine: v["machine"].as_bool().unwrap_or(false),
            active: v["active"].as_bool().unwrap_or(true),
        })
    }

    /// `check`'s account of the token: who, and what it can reach.
    pub fn describe(&self) -> String {
        let who = if self.machine { "machine user" } else { "user" };
        let reach = if self.admin {
            "an admin: sees every repository, so failed steps' logs (read access) and \
             Restart (write access) work everywhere"
        } else if self.machine {
            "not an admin: a machine user sees private repositories only as an admin, and \
             Drone answers 404 for the rest; logs need read access, Restart write access"
        } else {
            "not an admin: logs only of repositories this user can read, Restart only where \
             it can write (Drone answers 404 otherwise)"
        };
        let inactive = if self.active {
            ""
        } else {
            "; the account is inactive, so Drone refuses it (403) outside public repositories"
        };
        format!("token of {who} {}, {reach}{inactive}", self.login)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_user_and_what_it_reaches() {
        let u = DroneUser::from_json(&json!({"login": "ci\nbot", "admin": true, "machine": true}))
            .unwrap();
        assert_eq!(u.login, "ci bot");
        assert!(u
            .describe()
            .starts_with("token of machine user ci bot, an admin"));
        let u = DroneUser::from_json(&json!({"login": "bot", "machine": true})).unwrap();
        assert!(u
            .describe()
            .contains("private repositories only as an admin"));
        let u = DroneUser::from_json(&json!({"login": "ann", "active": false})).unwrap();
        let d = u.describe();
        assert!(d.contains("404") && d.contains("inactive"), "{d}");
        assert_eq!(
            DroneUser::from_json(&json!({"message": "Unauthorized"})),
            None
        );
    }
}
