"""The atomic Pusher."""
