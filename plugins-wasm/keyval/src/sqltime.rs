//! Time in SQL. Guests have no clock of their own here, and instances must
//! agree, so "now" is SQLite's (`unixepoch('subsec')`, in milliseconds).

/// The server clock in milliseconds, as SQL.
pub const NOW_MS: &str = "CAST(unixepoch('subsec') * 1000 AS INTEGER)";

/// `expires_at` has not passed, as SQL.
pub const LIVE: &str =
    "(expires_at IS NULL OR expires_at > CAST(unixepoch('subsec') * 1000 AS INTEGER))";
