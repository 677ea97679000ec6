//! Placeholder for issue 14's tests (filled in by the live-recovery work).
