"""Stream functions: mappings over a real engine with scripted in-process handlers."""
