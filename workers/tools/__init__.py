"""Built-in tools a workflow `tool` step can call, each registered as a `wfe.tools` entry point."""
