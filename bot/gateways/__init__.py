"""The only code that talks to the outside: Kubernetes, Prometheus, Alertmanager, Redis, Slack's Web API."""
