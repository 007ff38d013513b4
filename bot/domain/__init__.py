"""What the bot knows and decides: views, policy, topology, smoke tests, the approval gate."""
