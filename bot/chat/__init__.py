"""The chat edge: Slack app and Socket Mode, the console, dispatch, Block Kit and charts."""
