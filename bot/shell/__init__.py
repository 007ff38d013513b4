"""The process shell: the CLI, runtime wiring, worker, HTTP server and webhooks."""
