"""GraphQL: schema loading, document parsing and validation, and the resolvers of each type."""
