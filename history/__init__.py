"""History: Kafka consumers that persist deliveries to Cassandra, and the query service."""
