//! How each Drone status looks in Discord: one emoji, label and colour per
//! status, so builds, stages and steps read the same everywhere.
use super::markdown::one_line;
use crate::text::truncate_chars as truncate;

pub(super) const GREEN: u32 = 0x2ECC71;
pub(super) const GREY: u32 = 0x95A5A6;

/// How one Drone status looks in Discord.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusStyle {
    pub emoji: &'static str,
    pub label: String,
    /// `None` for statuses this version does not know: the embed then has no colour.
    pub color: Option<u32>,
}

/// Emoji, label and colour for a build/stage/step status.
pub fn status_style(status: &str) -> StatusStyle {
    let (emoji, label, color) = match status {
        "pending" => ("⏳", "Pending", 0x9E9E9E),
        "running" => ("🔄", "Running", 0x3498DB),
        "success" => ("✅", "Success", GREEN),
        "failure" => ("❌", "Failure", 0xE74C3C),
        "killed" => ("🛑", "Killed", 0x992D22),
        "error" => ("⚠️", "Error", 0xE67E22),
        "skipped" => ("⏭️", "Skipped", 0x7F8C8D),
        "blocked" => ("🚧", "Blocked (awaiting approval)", 0xF1C40F),
        "declined" => ("🚫", "Declined", 0x71368A),
        "waiting_on_dependencies" => ("🔗", "Waiting on dependencies", 0xBDC3C7),
        other => {
            let label = truncate(&one_line(other), 64);
            return StatusStyle {
                emoji: "❔",
                label: if label.is_empty() {
                    "Unknown".to_owned()
                } else {
                    label
                },
                color: None,
            };
        }
    };
    StatusStyle {
        emoji,
        label: label.to_owned(),
        color: Some(color),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drone::STATUSES;

    #[test]
    fn every_status_has_its_own_colour_and_emoji() {
        let styles: Vec<StatusStyle> = STATUSES.iter().map(|s| status_style(s)).collect();
        for (i, a) in styles.iter().enumerate() {
            assert!(a.color.is_some(), "{}", STATUSES[i]);
            assert!(!a.label.is_empty());
            for b in &styles[i + 1..] {
                assert_ne!(a.color, b.color, "{} / {}", a.label, b.label);
                assert_ne!(a.emoji, b.emoji, "{} / {}", a.label, b.label);
            }
        }
        let unknown = status_style("exploded\n");
        assert_eq!((unknown.color, unknown.label.as_str()), (None, "exploded"));
        assert_eq!(status_style("").label, "Unknown");
    }
}
