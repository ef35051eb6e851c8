"""Parsed and validated GraphQL documents, cached by query text; and the query depth limit.

Clients send the same few documents over and over (W&B's RunFiles, CreateRunFiles, ...), and parsing plus
validating one costs more than executing it. `DocumentCache` plugs into Ariadne's `query_parser` and
`query_validator` hooks and remembers, per query string, the parsed document and its validation errors.
The cache is a bounded LRU, so clients sending ever-new documents cannot make it grow without limit.
"""

from __future__ import annotations

import inspect
import threading
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, TypedDict

from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    TypeInfo,
    ValidationContext,
    ValidationRule,
    parse,
    validate,
)

MAX_QUERY_DEPTH = 15  # W&B's own documents nest at most about 6 fields deep
MAX_QUERY_TOKENS = 20_000  # W&B's largest documents have a few hundred
DEFAULT_CACHE_SIZE = 256
# Longer query strings are parsed and validated every time instead of being kept.
MAX_CACHED_QUERY_CHARS = 64 * 1024


class _ParseLimit(TypedDict, total=False):
    """The token limit for `parse`: max_lexical_tokens where graphql-core has it (max_tokens is then deprecated)."""

    max_tokens: int
    max_lexical_tokens: int


_PARSE_LIMIT: _ParseLimit = (
    {"max_lexical_tokens": MAX_QUERY_TOKENS}
    if "max_lexical_tokens" in inspect.signature(parse).parameters
    else {"max_tokens": MAX_QUERY_TOKENS}
)


def parse_query(query: str) -> DocumentNode:
    """Parse a query with the token limit; GraphQLError on syntax errors or too many tokens."""
    return parse(query, **_PARSE_LIMIT)


def _selection_depth(
    selection_set: SelectionSetNode | None,
    context: ValidationContext,
    fragment_depths: dict[str, int],
    in_progress: set[str],
) -> int:
    """How many fields deep `selection_set` nests, following fragments (each fragment measured once)."""
    if selection_set is None:
        return 0
    deepest = 0
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            depth = 1 + _selection_depth(selection.selection_set, context, fragment_depths, in_progress)
        elif isinstance(selection, InlineFragmentNode):
            depth = _selection_depth(selection.selection_set, context, fragment_depths, in_progress)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name in fragment_depths:
                depth = fragment_depths[name]
            elif name in in_progress:
                depth = 0  # a fragment cycle; NoFragmentCyclesRule reports it
            else:
                fragment = context.get_fragment(name)
                if fragment is None:
                    depth = 0  # KnownFragmentNamesRule reports it
                else:
                    in_progress.add(name)
                    depth = _selection_depth(fragment.selection_set, context, fragment_depths, in_progress)
                    in_progress.discard(name)
                    fragment_depths[name] = depth
        else:  # pragma: no cover - no other selection kinds exist
            depth = 0
        deepest = max(deepest, depth)
    return deepest


class QueryDepthRule(ValidationRule):
    """Reject operations nesting fields more than MAX_QUERY_DEPTH deep (`{ viewer { id } }` is 2 deep)."""

    max_depth = MAX_QUERY_DEPTH

    def __init__(self, context: ValidationContext) -> None:
        super().__init__(context)
        self._fragment_depths: dict[str, int] = {}

    def enter_operation_definition(self, node: OperationDefinitionNode, *_args: Any) -> Any:
        depth = _selection_depth(node.selection_set, self.context, self._fragment_depths, set())
        if depth > self.max_depth:
            name = f"operation {node.name.value!r}" if node.name else "the operation"
            self.report_error(
                GraphQLError(
                    f"{name} is nested {depth} fields deep; the limit is {self.max_depth}",
                    node,
                )
            )
        return self.SKIP  # the whole operation was measured here


@dataclass
class _Entry:
    document: DocumentNode
    rules: tuple[type[ASTValidationRule], ...] | None = None
    errors: list[GraphQLError] | None = None


class DocumentCache:
    """A thread-safe LRU of query text -> parsed document and its validation errors.

    Use `parse` as Ariadne's `query_parser` and `validate` as its `query_validator`. Validation results
    are for one schema: use one cache per schema. Syntax errors are not cached (they are re-raised fresh).
    """

    def __init__(self, max_entries: int = DEFAULT_CACHE_SIZE) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._by_query: OrderedDict[str, _Entry] = OrderedDict()
        self._by_document: dict[int, _Entry] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._by_query)

    def parse(self, context: Any, data: dict[str, Any]) -> DocumentNode:
        """Ariadne query_parser hook: the document of data["query"], parsed once per distinct text."""
        query: str = data["query"]
        with self._lock:
            entry = self._by_query.get(query)
            if entry is not None:
                self._by_query.move_to_end(query)
                self.hits += 1
                return entry.document
            self.misses += 1
        document = parse_query(query)
        if len(query) <= MAX_CACHED_QUERY_CHARS:
            with self._lock:
                if query not in self._by_query:
                    entry = _Entry(document)
                    self._by_query[query] = entry
                    self._by_document[id(document)] = entry
                    while len(self._by_query) > self.max_entries:
                        _, old = self._by_query.popitem(last=False)
                        self._by_document.pop(id(old.document), None)
                else:
                    document = self._by_query[query].document
        return document

    def is_query(self, query: Any, operation_name: Any) -> bool:
        """Whether the operation a request names (or its only one) is a query, from the cached parse.

        Args:
            query: The request's query text.
            operation_name: The request's operationName (None or "" for a document's only operation).

        Returns:
            True for a query; False for a mutation or subscription, and for anything that does not parse or
            names no operation of the document.
        """
        if not isinstance(query, str):
            return False
        try:
            document = self.parse(None, {"query": query})
        except GraphQLError:
            return False
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        if operation_name:
            operations = [o for o in operations if o.name is not None and o.name.value == operation_name]
        return len(operations) == 1 and operations[0].operation is OperationType.QUERY

    def validate(
        self,
        schema: GraphQLSchema,
        document_ast: DocumentNode,
        rules: Collection[type[ASTValidationRule]] | None = None,
        max_errors: int | None = None,
        type_info: TypeInfo | None = None,
        **kwargs: Any,
    ) -> list[GraphQLError]:
        """Ariadne query_validator hook: graphql-core's validate, once per cached document and rule set.

        The parameters are those of Ariadne's QueryValidator; `type_info` (which graphql-core 3.3's validate
        no longer takes) and any other keyword argument are passed on to graphql-core's validate.
        """
        if type_info is not None:
            kwargs["type_info"] = type_info
        rules_key = tuple(rules) if rules is not None else None
        with self._lock:
            entry = self._by_document.get(id(document_ast))
            if (
                entry is not None
                and entry.document is document_ast
                and entry.errors is not None
                and entry.rules == rules_key
            ):
                return entry.errors
        errors = validate(schema, document_ast, rules=rules, max_errors=max_errors, **kwargs)
        if entry is not None and entry.document is document_ast:
            with self._lock:
                entry.rules, entry.errors = rules_key, errors
        return errors
