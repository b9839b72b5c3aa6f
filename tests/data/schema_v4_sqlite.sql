-- The SQLite schema as autoreply wrote it up to m004_knowledge_version (before the
-- one-schema store), statement by statement: tests open such a database with today's store.
-- the ledger of applied migrations
CREATE TABLE IF NOT EXISTS _migrations (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, applied_at TEXT NOT NULL);
-- m001_initial
CREATE TABLE tickets (
    id INTEGER PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'claimed', 'resolved')),
    priority TEXT NOT NULL CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    reason TEXT NOT NULL,
    category TEXT,
    vip INTEGER NOT NULL DEFAULT 0,
    owner TEXT,
    suggested_owner TEXT,
    context TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    claimed_at TEXT,
    first_reply_at TEXT,
    resolved_at TEXT,
    resolution TEXT
);
CREATE UNIQUE INDEX tickets_one_active ON tickets (conversation_id) WHERE status <> 'resolved';
CREATE INDEX tickets_conversation ON tickets (conversation_id);
CREATE INDEX tickets_status_priority ON tickets (status, priority, created_at);
CREATE INDEX tickets_owner ON tickets (owner);
CREATE INDEX tickets_user_claimed ON tickets (user_id, claimed_at);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('customer', 'bot', 'agent')),
    text TEXT NOT NULL,
    created_at TEXT NOT NULL,
    external_id TEXT,
    action TEXT,
    reason TEXT,
    entry_id TEXT,
    confidence REAL,
    agent TEXT,
    ticket_id INTEGER REFERENCES tickets (id) ON DELETE SET NULL,
    reply_to INTEGER REFERENCES messages (id) ON DELETE SET NULL,
    UNIQUE (channel, external_id)
);
CREATE INDEX messages_conversation ON messages (conversation_id, id);
CREATE INDEX messages_created_at ON messages (created_at);
CREATE INDEX messages_ticket ON messages (ticket_id);
CREATE INDEX messages_reply_to ON messages (reply_to);
CREATE INDEX messages_entry ON messages (entry_id);
CREATE TABLE gaps (
    id INTEGER PRIMARY KEY,
    question TEXT NOT NULL,
    normalized TEXT NOT NULL,
    reason TEXT NOT NULL,
    best_entry_id TEXT,
    best_score REAL,
    category TEXT,
    channel TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX gaps_created_at ON gaps (created_at);
CREATE TABLE feedback (
    id INTEGER PRIMARY KEY,
    message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    helpful INTEGER NOT NULL,
    comment TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX feedback_message ON feedback (message_id);
CREATE INDEX feedback_created_at ON feedback (created_at);
CREATE TABLE faq_candidates (
    id INTEGER PRIMARY KEY,
    ticket_id INTEGER REFERENCES tickets (id) ON DELETE SET NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    category TEXT NOT NULL,
    agent TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'accepted', 'dismissed')),
    created_at TEXT NOT NULL
);
CREATE INDEX faq_candidates_status ON faq_candidates (status, created_at);
-- m002_agents
CREATE TABLE agents (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('agent', 'admin')),
    token_hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE interceptions (
    id INTEGER PRIMARY KEY,
    agent TEXT NOT NULL,
    ticket_id INTEGER REFERENCES tickets (id) ON DELETE SET NULL,
    phrase TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX interceptions_created_at ON interceptions (created_at);
CREATE INDEX interceptions_agent ON interceptions (agent, created_at);
CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY,
    message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    channel TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('sent', 'failed', 'poll')),
    error TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX deliveries_message ON deliveries (message_id);
CREATE INDEX deliveries_status ON deliveries (status, created_at);
CREATE INDEX messages_role_action ON messages (role, action);
-- m003_gap_topics
CREATE TABLE gap_topics (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('new', 'near_miss')),
    status TEXT NOT NULL DEFAULT 'open'
        CHECK (status IN ('open', 'accepted', 'dismissed')),
    encoder TEXT NOT NULL,
    centroid BLOB NOT NULL,
    size INTEGER NOT NULL,
    representative TEXT NOT NULL,
    keywords TEXT NOT NULL,
    category TEXT,
    entry_id TEXT,
    first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX gap_topics_status ON gap_topics (status, size);
CREATE TABLE gap_assignments (
    gap_id INTEGER PRIMARY KEY REFERENCES gaps (id) ON DELETE CASCADE,
    topic_id INTEGER REFERENCES gap_topics (id) ON DELETE SET NULL,
    similarity REAL,
    encoder TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX gap_assignments_topic ON gap_assignments (topic_id, gap_id);
CREATE INDEX tickets_resolved_at ON tickets (resolved_at);
-- m004_knowledge_version
CREATE TABLE knowledge_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL,
    updated_at TEXT
);
INSERT INTO knowledge_version (id, version, updated_at) VALUES (1, 0, NULL);
