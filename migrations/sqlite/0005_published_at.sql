-- Strapi's `publishedAt` of a user brought in by `tokenledger import strapi`, as Strapi stored
-- it (ISO 8601 with milliseconds). NULL for users registered here, whose `publishedAt` is
-- their `createdAt`, as Strapi publishes a user when it creates it.
ALTER TABLE users ADD COLUMN published_at TEXT;
