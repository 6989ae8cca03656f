"""The platform server: app factory, middleware, process supervision."""
