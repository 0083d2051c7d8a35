-- The console finds a customer's messages by destination number, the latest
-- first (src/console/, /messages?q=).
CREATE INDEX messages_by_destination ON messages(dest_addr, message_id);
