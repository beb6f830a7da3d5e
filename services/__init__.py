"""Services: store, clustering, dispatcher, feed, simulator, and the `linewatch` CLI."""
