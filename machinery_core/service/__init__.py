"""The use cases behind the routes and the state machine's tasks."""
