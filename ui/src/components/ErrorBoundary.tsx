// A view that throws shows what went wrong and a way back, never a blank page.
import { Component } from "react";
import type { ErrorInfo, ReactNode } from "react";

export class ErrorBoundary extends Component<{ children: ReactNode }, { error?: Error }> {
  state: { error?: Error } = {};
  static getDerivedStateFromError(error: Error) {
    return { error };
  }
  componentDidCatch(error: Error, info: ErrorInfo) {
    console.error("a view failed", error, info.componentStack);
  }
  render() {
    if (!this.state.error) return this.props.children;
    return (
      <div className="page">
        <h1>This view failed</h1>
        <div className="error-note" role="alert">{this.state.error.message}</div>
        <button onClick={() => { this.setState({ error: undefined }); window.location.hash = "#/"; }}>Back to the dashboard</button>
      </div>
    );
  }
}
