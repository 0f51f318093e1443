//! A line-at-a-time CommonMark block-structure tracker.
