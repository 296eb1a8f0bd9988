//! Every provider end to end through the broker, requests built by `hookgate sign` (issues #3, #4, #5).
