"""PayFlow ChatOps bot: run PayFlow production from Slack, safely."""
