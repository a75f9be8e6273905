// The Probot baseline: Probot's own server (`run`) with one no-op handler, as in its docs.
import { run } from "probot";

await run((app) => {
  app.on("issue_comment.created", async () => {});
});
