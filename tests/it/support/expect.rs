//! Expected files: an output compared with the file that holds what it must be, byte for byte,
//! with a unified diff when they differ. `UPDATE_EXPECT=1` writes the files from the current
//! output instead (review the diff in git before committing it).

use std::fs;
use std::path::Path;

/// The variable that makes [`file`] write the expected files instead of comparing.
pub const UPDATE: &str = "UPDATE_EXPECT";

/// Whether [`UPDATE`] is set.
pub fn updating() -> bool {
    std::env::var_os(UPDATE).is_some()
}

/// `Ok` when the file at `path` holds exactly `actual` (or, when [`updating`], once it has been
/// written); otherwise what is wrong: the file missing, or a diff from it to `actual`.
pub fn file(path: &Path, actual: &str) -> Result<(), String> {
    if updating() {
        return fs::write(path, actual)
            .map_err(|e| format!("cannot write {}: {e}", path.display()));
    }
    match fs::read_to_string(path) {
        Ok(expected) if expected == actual => Ok(()),
        Ok(expected) => {
            Err(format!("differs from {}:\n{}", path.display(), diff(&expected, actual)))
        }
        Err(e) => Err(format!("{} missing ({e}); {UPDATE}=1 writes it", path.display())),
    }
}

/// A unified diff of two texts by lines, with 3 lines of context; carriage returns are shown as
/// `\r`, so that a difference in line endings is visible.
pub fn diff(expected: &str, actual: &str) -> String {
    similar::TextDiff::from_lines(expected, actual)
        .unified_diff()
        .context_radius(3)
        .header("expected", "actual")
        .to_string()
        .replace('\r', "\\r")
}
