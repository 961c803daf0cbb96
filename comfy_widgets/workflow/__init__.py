"""The workflow layer: load a workflow (API or UI format), convert it to the prompt the frontend
would send, and extract or apply its editable parameters. Nothing here talks to a server."""
