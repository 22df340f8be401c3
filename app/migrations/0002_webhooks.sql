-- Webhook endpoints and deliveries were created here until the outbox took
-- over its schema: outbox/schema/0001_outbox.sql creates them on new
-- databases. Kept, empty, so the version numbers of existing databases hold.
SELECT 1;
