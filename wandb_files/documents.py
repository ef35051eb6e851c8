"""The GraphQL operations the SDK sends, written as W&B's own client writes them.

Keeping them identical to the real `wandb` client's documents (see shared/reference/wandb-wire.md) means both
clients exercise the same server paths. The test suite validates each one against the server's schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gql import GraphQLRequest, gql

from wandb_files.errors import NotFoundError

VIEWER: GraphQLRequest = gql(
    """
    query Viewer {
      viewer { id entity username email flags teams { edges { node { name } } } }
    }
    """
)

SERVER_FEATURES: GraphQLRequest = gql(
    """
    query ServerFeaturesQuery {
      serverInfo { features { name isEnabled } }
    }
    """
)

_RUN_FIELDS = """
fragment RunFragment on Run {
  id tags name displayName sweepName state config group jobType commit readOnly createdAt heartbeatAt
  description notes systemMetrics summaryMetrics historyLineCount user { name username } historyKeys
}
"""

RUN: GraphQLRequest = gql(
    """
    query Run($project: String!, $entity: String!, $name: String!) {
      project(name: $project, entityName: $entity) { run(name: $name) { projectId ...RunFragment } }
    }
    """
    + _RUN_FIELDS
)

RUNS: GraphQLRequest = gql(
    """
    query Runs($project: String!, $entity: String!, $cursor: String, $perPage: Int = 50, $order: String,
               $filters: JSONString) {
      project(name: $project, entityName: $entity) {
        internalId runCount(filters: $filters) readOnly
        runs(filters: $filters, after: $cursor, first: $perPage, order: $order) {
          edges { node { projectId ...RunFragment } cursor }
          pageInfo { endCursor hasNextPage }
        }
      }
    }
    """
    + _RUN_FIELDS
)

RUN_FILES: GraphQLRequest = gql(
    """
    query RunFiles($project: String!, $entity: String!, $name: String!, $fileCursor: String,
                   $fileLimit: Int = 50, $fileNames: [String] = [], $upload: Boolean = false, $pattern: String) {
      project(name: $project, entityName: $entity) {
        internalId
        run(name: $name) { fileCount ...RunFilesFragment }
      }
    }
    fragment RunFilesFragment on Run {
      files(names: $fileNames, after: $fileCursor, first: $fileLimit, pattern: $pattern) {
        edges { node { id name url(upload: $upload) directUrl sizeBytes mimetype updatedAt md5 } cursor }
        pageInfo { endCursor hasNextPage }
      }
    }
    """
)

# RUN_FILES with only what a mirror compares (no url, no directUrl: the server makes and signs those per
# file); `sync` lists with it and asks RUN_FILES, by name, only for the files it fetches.
RUN_FILE_STATES: GraphQLRequest = gql(
    """
    query RunFileStates($project: String!, $entity: String!, $name: String!, $fileCursor: String,
                        $fileLimit: Int = 50, $fileNames: [String] = [], $pattern: String) {
      project(name: $project, entityName: $entity) {
        internalId
        run(name: $name) {
          fileCount
          files(names: $fileNames, after: $fileCursor, first: $fileLimit, pattern: $pattern) {
            edges { node { id name sizeBytes md5 updatedAt } cursor }
            pageInfo { endCursor hasNextPage }
          }
        }
      }
    }
    """
)

# W&B's GetProjects (W&B's old name for projects is models), without the owner's user fragment.
PROJECTS: GraphQLRequest = gql(
    """
    query GetProjects($entity: String, $cursor: String, $perPage: Int = 50) {
      models(entityName: $entity, after: $cursor, first: $perPage) {
        pageInfo { endCursor hasNextPage }
        edges { node { id name entityName createdAt isBenchmark } cursor }
      }
    }
    """
)

UPSERT_RUN: GraphQLRequest = gql(
    """
    mutation UpsertBucket($name: String, $project: String, $entity: String, $displayName: String,
                          $config: JSONString, $summaryMetrics: JSONString, $tags: [String!], $groupName: String,
                          $jobType: String, $notes: String) {
      upsertBucket(input: {name: $name, modelName: $project, entityName: $entity, displayName: $displayName,
                           config: $config, summaryMetrics: $summaryMetrics, tags: $tags, groupName: $groupName,
                           jobType: $jobType, notes: $notes}) {
        bucket { projectId ...RunFragment }
        inserted
      }
    }
    """
    + _RUN_FIELDS
)

# W&B's run.update() and summary.update() in one document: the run named by its node id, and only the variables
# given are set (the server leaves the other fields as they are; an empty string clears a text field).
UPDATE_RUN: GraphQLRequest = gql(
    """
    mutation UpsertBucket($id: String!, $description: String, $displayName: String, $notes: String,
                          $tags: [String!], $config: JSONString, $summaryMetrics: JSONString, $groupName: String,
                          $jobType: String) {
      upsertBucket(input: {id: $id, description: $description, displayName: $displayName, notes: $notes,
                           tags: $tags, config: $config, summaryMetrics: $summaryMetrics, groupName: $groupName,
                           jobType: $jobType}) {
        bucket { projectId ...RunFragment }
      }
    }
    """
    + _RUN_FIELDS
)

CREATE_RUN_FILES: GraphQLRequest = gql(
    """
    mutation CreateRunFiles($entity: String!, $project: String!, $run: String!, $files: [String!]!) {
      createRunFiles(input: {entityName: $entity, projectName: $project, runName: $run, files: $files}) {
        runID uploadHeaders files { name uploadUrl }
      }
    }
    """
)

# CREATE_RUN_FILES with the size and md5 of each file, for servers advertising SIGNED_UPLOAD_CHECKSUMS: their
# URLs are signed for exactly those bytes, and each file's uploadHeaders go with its PUT.
CREATE_RUN_FILES_WITH_SPECS: GraphQLRequest = gql(
    """
    mutation CreateRunFiles($entity: String!, $project: String!, $run: String!, $files: [String!]!,
                            $fileSpecs: [RunFileSpecInput!]) {
      createRunFiles(input: {entityName: $entity, projectName: $project, runName: $run, files: $files,
                             fileSpecs: $fileSpecs}) {
        runID uploadHeaders files { name uploadUrl uploadHeaders }
      }
    }
    """
)

MARK_RUN_FILES_UPLOADED: GraphQLRequest = gql(
    """
    mutation MarkRunFilesUploaded($entity: String!, $project: String!, $run: String!, $files: [String!]!) {
      markRunFilesUploaded(input: {entityName: $entity, projectName: $project, runName: $run, files: $files}) {
        success
      }
    }
    """
)

DELETE_FILES: GraphQLRequest = gql(
    """
    mutation deleteFiles($files: [ID!]!, $projectId: Int) {
      deleteFiles(input: {files: $files, projectId: $projectId}) { success }
    }
    """
)

ALL: dict[str, GraphQLRequest] = {
    "VIEWER": VIEWER,
    "SERVER_FEATURES": SERVER_FEATURES,
    "RUN": RUN,
    "RUNS": RUNS,
    "RUN_FILES": RUN_FILES,
    "RUN_FILE_STATES": RUN_FILE_STATES,
    "PROJECTS": PROJECTS,
    "UPSERT_RUN": UPSERT_RUN,
    "UPDATE_RUN": UPDATE_RUN,
    "CREATE_RUN_FILES": CREATE_RUN_FILES,
    "CREATE_RUN_FILES_WITH_SPECS": CREATE_RUN_FILES_WITH_SPECS,
    "DELETE_FILES": DELETE_FILES,
    "MARK_RUN_FILES_UPLOADED": MARK_RUN_FILES_UPLOADED,
}


def project_in(data: Mapping[str, Any], entity: str, project: str) -> Mapping[str, Any]:
    """The `project` of an answer to RUN, RUNS or RUN_FILES.

    Raises:
        NotFoundError: it is null (no such project, or an entity the key may not see: the server does not say).
    """
    found = data.get("project")
    if found is None:
        raise NotFoundError(f"Project {entity}/{project} not found")
    return found  # type: ignore[no-any-return]


def run_in(data: Mapping[str, Any], entity: str, project: str, run_id: str) -> Mapping[str, Any]:
    """The `project.run` of an answer to RUN or RUN_FILES.

    Raises:
        NotFoundError: the project or the run is null.
    """
    found = project_in(data, entity, project).get("run")
    if found is None:
        raise NotFoundError(f"Run {entity}/{project}/{run_id} not found")
    return found  # type: ignore[no-any-return]
