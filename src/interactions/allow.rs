//! Who may press Restart: the `[drone]` table's `restart_roles` and
//! `restart_users` (Discord ids, checked when the routing file is read),
//! matched against the clicker as Discord describes them in the
//! interaction: `member.user.id` and `member.roles` in a server,
//! `user.id` in a DM.
use serde_json::Value;

/// The allow-list. Empty: nobody may restart, and no button is shown.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestartAllow {
    pub roles: Vec<String>,
    pub users: Vec<String>,
}

impl RestartAllow {
    /// Whether anyone at all may restart.
    pub fn is_configured(&self) -> bool {
        !(self.roles.is_empty() && self.users.is_empty())
    }

    /// Whether the user who made `interaction` is on the list, by id or by
    /// one of their roles in the server the click came from.
    pub fn permits(&self, interaction: &Value) -> bool {
        let member = interaction.get("member");
        let user = member
            .and_then(|m| m.get("user"))
            .or_else(|| interaction.get("user"))
            .and_then(|u| u.get("id"))
            .and_then(Value::as_str);
        if user.is_some_and(|u| self.users.iter().any(|a| a == u)) {
            return true;
        }
        let roles = member
            .and_then(|m| m.get("roles"))
            .and_then(Value::as_array);
        roles.is_some_and(|roles| {
            roles
                .iter()
                .filter_map(Value::as_str)
                .any(|r| self.roles.iter().any(|a| a == r))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn users_by_id_and_members_by_role() {
        let allow = RestartAllow {
            roles: vec!["500".into()],
            users: vec!["42".into()],
        };
        assert!(allow.is_configured());
        assert!(allow.permits(&json!({"member": {"user": {"id": "42"}, "roles": []}})));
        assert!(allow.permits(&json!({"member": {"user": {"id": "7"}, "roles": ["9", "500"]}})));
        assert!(allow.permits(&json!({"user": {"id": "42"}})));
        assert!(!allow.permits(&json!({"member": {"user": {"id": "7"}, "roles": ["9"]}})));
        // A role id given as a user id, or roles outside a member, count for nothing.
        assert!(!allow.permits(&json!({"user": {"id": "500"}, "roles": ["500"]})));
        assert!(!allow.permits(&json!({})));
        assert!(!RestartAllow::default().is_configured());
        assert!(!RestartAllow::default().permits(&json!({"user": {"id": "42"}})));
    }
}
