CREATE TABLE settings (
	"key" VARCHAR(64) NOT NULL, 
	value TEXT NOT NULL, 
	PRIMARY KEY ("key")
);
CREATE TABLE users (
	id INTEGER NOT NULL, 
	name VARCHAR(64) NOT NULL, 
	api_key_sha256 VARCHAR(64) NOT NULL, 
	admin BOOLEAN NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (name), 
	UNIQUE (api_key_sha256)
);
CREATE TABLE entities (
	id INTEGER NOT NULL, 
	name VARCHAR(64) NOT NULL, 
	owner_id INTEGER NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (name), 
	FOREIGN KEY(owner_id) REFERENCES users (id) ON DELETE CASCADE
);
CREATE INDEX ix_entities_owner_id ON entities (owner_id);
CREATE TABLE projects (
	id INTEGER NOT NULL, 
	entity_id INTEGER NOT NULL, 
	name VARCHAR(128) NOT NULL, 
	created_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (entity_id, name), 
	FOREIGN KEY(entity_id) REFERENCES entities (id) ON DELETE CASCADE
);
CREATE TABLE runs (
	id INTEGER NOT NULL, 
	project_id INTEGER NOT NULL, 
	name VARCHAR(128) NOT NULL, 
	display_name TEXT, 
	state VARCHAR(32) NOT NULL, 
	config TEXT, 
	summary TEXT, 
	description TEXT, 
	notes TEXT, 
	"group" TEXT, 
	job_type TEXT, 
	tags TEXT, 
	"commit" TEXT, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	heartbeat_at DATETIME, 
	user_id INTEGER NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (project_id, name), 
	FOREIGN KEY(project_id) REFERENCES projects (id) ON DELETE CASCADE, 
	FOREIGN KEY(user_id) REFERENCES users (id)
);
CREATE TABLE files (
	id INTEGER NOT NULL, 
	run_id INTEGER NOT NULL, 
	name TEXT NOT NULL, 
	size_bytes BIGINT NOT NULL, 
	md5 VARCHAR(24) NOT NULL, 
	mimetype VARCHAR(255) NOT NULL, 
	blob_key VARCHAR(64) NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(run_id) REFERENCES runs (id) ON DELETE CASCADE, 
	UNIQUE (blob_key)
);
CREATE UNIQUE INDEX ix_files_run_name ON files (run_id, name);
