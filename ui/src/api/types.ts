// Names for the shapes of the daemon's API, generated from its OpenAPI document (`npm run gen`
// regenerates schema.d.ts from ui/openapi.json; a Rust test keeps that file equal to the document
// the daemon serves).
import type { components } from "./schema";

type S = components["schemas"];
export type Job = S["Job"];
export type JobSpec = S["JobSpec"];
export type JobState = S["JobState"];
export type JobChange = S["JobChange"];
export type Event = S["Event"];
export type ErrorBody = S["ErrorBody"];
export type ErrorCode = S["ErrorCode"];
export type GpuReport = S["GpuReport"];
export type GpuView = S["GpuView"];
export type GpuHolder = S["GpuHolder"];
export type GpuHistory = S["GpuHistory"];
export type Status = S["Status"];
export type Notebook = S["Notebook"];
export type NotebookRequest = S["NotebookRequest"];
export type NotebookLink = S["NotebookLink"];
export type Image = S["Image"];
export type Run = S["Run"];
export type Scope = S["Scope"];
export type TokenInfo = S["TokenInfo"];
export type TokenRequest = S["TokenRequest"];
export type NewToken = S["NewToken"];
export type ListOrder = S["ListOrder"];
export type JobPage = S["JobPage"];
export type Pruned = S["Pruned"];
export type SettingsView = S["SettingsView"];
export type HomeUsage = S["HomeUsage"];
export type RetentionLimits = S["RetentionLimits"];
export type GcReport = S["GcReport"];
export type RetentionReport = S["RetentionReport"];
export type PrunedJob = S["PrunedJob"];
export type Me = S["Me"];
export type Role = S["Role"];
export type Quota = S["Quota"];
export type UserInfo = S["UserInfo"];
export type UserShare = S["UserShare"];
export type AuditEntry = S["AuditEntry"];
export type UserGpuPoint = S["UserGpuPoint"];
export type ClusterInfo = S["ClusterInfo"];
export type ClusterCheck = S["ClusterCheck"];
export type ClusterRequest = S["ClusterRequest"];
